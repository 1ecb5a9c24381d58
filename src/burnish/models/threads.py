"""One place to set torch's CPU thread count, and to follow what other processes leave free.

On small machines thread oversubscription is the most common cause of slow CPU runs: two
OpenMP threads per process on a 2-core machine that also runs a judge, a server or a second
process can make a step many times slower than one thread (an OpenMP team waits at every
barrier for its slowest thread, and a thread that shares its core runs at half speed). Call
`set_threads` once, early, with a deliberate number, or let `ThreadGovernor` choose: between
training steps it measures how many cores other processes kept busy and uses the rest.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

__all__ = ["ThreadGovernor", "cpu_budget", "set_threads"]

_applied: int | None = None


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op (and, the first time, inter-op) CPU threads.

    Idempotent: calling it again with the same number does nothing; another number changes the
    intra-op count (torch allows the inter-op count to be set only once per process).

    Args:
        n: threads to use; default ``OMP_NUM_THREADS`` when set, else the CPU count.

    Returns:
        The thread count now in effect.

    Raises:
        ValueError: if ``n`` is smaller than 1.
    """
    global _applied
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    if _applied == n and torch.get_num_threads() == n:
        return n
    torch.set_num_threads(n)
    if _applied is None:
        # Fails once parallel work has run: the inter-op pool is then fixed for the process.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)
    _applied = n
    return n


def cpu_budget() -> int:
    """The CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy seconds of the whole machine, CPU seconds of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    own = os.times()
    return (sum(fields[:8]) - idle) / hz, own.user + own.system


class ThreadGovernor:
    """Keeps torch's intra-op threads at the cores that other processes leave free.

    `adjust()` is called between steps. Over the time since its last measurement (at least
    `window_s`), it takes the machine's busy CPU time (`/proc/stat`) minus this process's own,
    which is what other processes used, in cores; the thread count becomes the CPU budget minus
    that, rounded, between 1 and `most`. On a quiet machine it stays at `most`; beside one
    busy process on 2 cores it drops to 1 and comes back when that process ends. Where
    `/proc/stat` does not exist it keeps `most`.
    """

    def __init__(self, most: int, window_s: float = 1.0) -> None:
        if most < 1:
            raise ValueError(f"thread count must be >= 1, got {most}")
        self.most, self.window_s = most, window_s
        self.threads = set_threads(most)
        self._last = (time.monotonic(), _cpu_seconds())

    def adjust(self) -> int:
        """Measure and set the thread count; returns it."""
        t0, c0 = self._last
        now = time.monotonic()
        if c0 is None or now - t0 < self.window_s:
            return self.threads
        c1 = _cpu_seconds()
        if c1 is None:
            return self.threads
        others = max(0.0, (c1[0] - c0[0]) - (c1[1] - c0[1])) / (now - t0)  # cores
        self._last = (now, c1)
        self.threads = set_threads(max(1, min(self.most, round(cpu_budget() - others))))
        return self.threads
