"""The report in a real browser: Debian's headless chromium loads it, with no console error, and
its DOM holds every section and one alert marker per alert; a screenshot shows full-width plots.

CI installs chromium (`.ci/run`), so this runs there; on a machine without chromium it is
skipped.
"""

import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from report_helpers import alerting_run

from burnish.store import RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run does)")
SECTIONS = {"learning", "health", "monitors", "judges", "throughput", "rollouts"}
WIDTH = 1400


def chromium(*args, url, timeout=90):
    """Run headless chromium on `url`; returns (stdout, stderr). Console messages go to stderr
    (`--enable-logging=stderr`) as `CONSOLE(...)` lines."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", f"--window-size={WIDTH},2000", *args, url]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return res.stdout, res.stderr


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


class Dom(HTMLParser):
    """Section ids, alert-marker ids and rollout cards of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.sections, self.markers, self.rollouts = set(), [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.add(a.get("id"))
        if "alert-marker" in (a.get("class") or "").split():
            self.markers.append(a.get("id"))
        if tag == "details" and "rollout" in (a.get("class") or ""):
            self.rollouts += 1


@pytest.fixture(scope="module")
def run(tiny_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("browser") / "run"
    alerting_run(tiny_dir, run_dir)
    return run_dir


def test_console_errors_are_detected(tmp_path):
    """The check below can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('broken'); nope();</script></body></html>")
    _, err = chromium("--dump-dom", url=bad.as_uri())
    assert console_errors(err)


def test_report_loads_without_errors_with_sections_and_alert_markers(run):
    store = RunStore.open(run)
    alerts = store.alerts()
    store.close()
    assert alerts
    dom_text, err = chromium("--dump-dom", url=(run / "report.html").as_uri())
    assert console_errors(err) == []
    dom = Dom()
    dom.feed(dom_text)
    assert dom.sections >= SECTIONS
    assert len(dom.markers) >= len(alerts)
    for a in alerts:  # each alert is drawn at its step
        assert any(f"-step-{a['step']}-" in m for m in dom.markers), a
    assert dom.rollouts > 0


def test_screenshot_plots_use_the_full_width(run, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", url=(run / "report.html").as_uri())
    img = imread(str(shot))
    assert img.shape[1] == WIDTH
    # the rows of the first plot row (below the header and the table): columns with ink
    band = img[img.shape[0] // 5 : img.shape[0] // 3, :, :3]
    inked = (band.std(axis=0).max(axis=1) > 0.02).mean()
    assert inked > 0.8, f"plots cover only {inked:.0%} of the width"
