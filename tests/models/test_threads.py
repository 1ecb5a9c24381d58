import pytest
import torch

from burnish.models import set_threads


def test_set_threads_is_idempotent_and_validates():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert set_threads(1) == 1  # second call: nothing to do, still 1
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="thread count must be >= 1, got 0"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_governor_uses_the_cores_other_processes_leave(monkeypatch):
    """Fake clocks: another process busy on one of two cores -> 1 thread; quiet again -> 2."""
    from burnish.models import threads as th

    before = torch.get_num_threads()
    clock = {"t": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(th, "cpu_budget", lambda: 2)
    monkeypatch.setattr(th.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(th, "_cpu_seconds", lambda: (clock["busy"], clock["own"]))

    def elapse(seconds, own_cores, other_cores):
        clock["t"] += seconds
        clock["own"] += seconds * own_cores
        clock["busy"] += seconds * (own_cores + other_cores)

    try:
        gov = th.ThreadGovernor(2)
        assert gov.threads == 2
        elapse(0.5, 2.0, 0.0)
        assert gov.adjust() == 2  # shorter than the window: no measurement yet
        elapse(1.5, 1.0, 1.0)  # a busy loop beside this process
        assert gov.adjust() == 1 and torch.get_num_threads() == 1
        elapse(2.0, 1.0, 0.1)  # it ended
        assert gov.adjust() == 2 and torch.get_num_threads() == 2
        elapse(2.0, 0.0, 3.0)  # busier than the machine: never below one thread
        assert gov.adjust() == 1
    finally:
        torch.set_num_threads(before)


def test_governor_sees_a_real_busy_process():
    import subprocess
    import sys
    import time

    from burnish.models.threads import ThreadGovernor, cpu_budget

    if cpu_budget() < 2:
        pytest.skip("needs 2 CPUs")
    before = torch.get_num_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        gov = ThreadGovernor(cpu_budget(), window_s=1.0)
        time.sleep(1.5)
        assert gov.adjust() <= cpu_budget() - 1
    finally:
        busy.kill()
        torch.set_num_threads(before)
