"""Every doc citation in the code resolves inside the repository.

In `src/`, a citation names a Markdown file by its repository path (`docs/algorithms.md`),
optionally followed by sections (`§5`, `§3–§12`, `§13 item 3`). A bare `§N` refers to the file
cited last before it in the same source file, as a docstring that names its page once and then
cites `§10`, `§8`. Each cited file must exist, each section must be a numbered heading of it
(`## 13.`, `### 14.2`), and each item a numbered list entry of that section. No citation may point
outside the repository (`shared/docs/...`, the internal `DESIGN` notes).

The pages under `docs/` are checked the same way: their links resolve, and every `§N` is a
heading of the page it refers to (the linked page when it directly follows a link, else the page
itself).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOCS = ROOT / "docs"

_TOKEN = re.compile(
    r"(?P<doc>[\w./-]*[\w-]+\.md)\b"
    r"|§\s*(?P<sec>\d+(?:\.\d+)*)(?:\s+item\s+(?P<item>\d+))?"
    r"|(?P<banned>shared/docs|\bDESIGN\b)"
)
_HEADING = re.compile(r"^(?P<hashes>#+)\s+(?P<num>\d+(?:\.\d+)*)[.\s]")
_LINK_SECTION = re.compile(r"\]\((?P<doc>[\w./-]+\.md)\)\s*§\s*(?P<sec>\d+(?:\.\d+)*)")
_LINK = re.compile(r"\]\((?P<target>[^)#\s]+\.md)(?:#[^)]*)?\)")
_BARE_SECTION = re.compile(r"§\s*(?P<sec>\d+(?:\.\d+)*)")


def _sections(path: Path) -> dict[str, list[str]]:
    """Numbered headings of a Markdown file -> the lines of their section (up to the next heading
    of the same or a higher level)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[str, list[str]] = {}
    open_: list[tuple[int, str]] = []  # (level, number) of the sections the line belongs to
    in_code = False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if m:
            level = len(m["hashes"])
            open_ = [(lv, n) for lv, n in open_ if lv < level]
            open_.append((level, m["num"]))
            found.setdefault(m["num"], [])
            continue
        for _, num in open_:
            found[num].append(line)
    return found


def _check_section(doc: Path, sec: str, item: str | None, where: str) -> list[str]:
    sections = _sections(doc)
    rel = doc.relative_to(ROOT)
    if sec not in sections:
        return [f"{where}: {rel} has no section §{sec}"]
    if item is not None and not any(re.match(rf"\s*{item}\.\s", ln) for ln in sections[sec]):
        return [f"{where}: {rel} §{sec} has no item {item}"]
    return []


def citation_failures(text: str, where: str) -> list[str]:
    """Citations in one source text that do not resolve (empty: all good)."""
    failures: list[str] = []
    current: Path | None = None
    for m in _TOKEN.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        at = f"{where}:{line}"
        if m["banned"]:
            failures.append(f"{at}: cites {m['banned']!r}, which is not in the repository")
        elif m["doc"]:
            name = m["doc"]
            current = None
            if "shared/docs" in name or "DESIGN" in name:
                failures.append(f"{at}: cites {name!r}, which is not in the repository")
            elif "/" not in name:
                failures.append(f"{at}: cite {name!r} by its path (docs/{name})")
                if (DOCS / name).is_file():
                    current = DOCS / name  # still check its sections
            elif not (ROOT / name).is_file():
                failures.append(f"{at}: {name} does not exist")
            else:
                current = ROOT / name
        elif current is None:
            failures.append(f"{at}: §{m['sec']} does not follow a citation of a file in the repo")
        else:
            failures += _check_section(current, m["sec"], m["item"], at)
    return failures


def _source_failures() -> list[str]:
    failures = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        failures += citation_failures(text, str(path.relative_to(ROOT)))
    return failures


def test_citations_in_src_resolve():
    failures = _source_failures()
    assert not failures, "unresolved doc citations:\n" + "\n".join(failures)


def test_docs_links_and_sections_resolve():
    failures = []
    pages = sorted(DOCS.glob("*.md"))
    assert pages, f"no pages in {DOCS}"
    for page in pages:
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            at = f"{page.relative_to(ROOT)}:{i}"
            for m in _LINK.finditer(line):
                if not (page.parent / m["target"]).is_file():
                    failures.append(f"{at}: link to missing {m['target']}")
            linked = {m.start("sec") for m in _LINK_SECTION.finditer(line)}
            for m in _LINK_SECTION.finditer(line):
                target = page.parent / m["doc"]
                if target.is_file():
                    failures += _check_section(target, m["sec"], None, at)
            for m in _BARE_SECTION.finditer(line):
                if m.start("sec") not in linked:
                    failures += _check_section(page, m["sec"], None, at)
    assert not failures, "unresolved references in docs/:\n" + "\n".join(failures)


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in index]
    assert not missing, f"docs/README.md does not list {missing}"


def test_checker_catches_what_it_should():
    good = '"""See docs/algorithms.md §5 and §13 item 3; aggregation (§10), docs/README.md."""'
    assert citation_failures(good, "good.py") == []
    bad = {
        '"""(algorithms.md §5)"""': "by its path",
        '"""docs/nope.md"""': "does not exist",
        '"""docs/algorithms.md §99"""': "no section §99",
        '"""docs/algorithms.md §13 item 99"""': "no item 99",
        '"""§2.8 of the judge notes"""': "does not follow a citation",
        '"""(DESIGN §3.2)"""': "not in the repository",
        '"""shared/docs/judges_and_hacking.md §3.1"""': "not in the repository",
    }
    for text, needle in bad.items():
        failures = citation_failures(text, "bad.py")
        assert any(needle in f for f in failures), (text, failures)
