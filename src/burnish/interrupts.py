"""Ctrl-C (SIGINT) that a long run cannot lose.

Python turns SIGINT into a `KeyboardInterrupt` raised wherever the main thread happens to be, and
third-party code does not always let it through: transformers' lazy imports turn one raised
while a module loads into a `ModuleNotFoundError`, and a broad handler elsewhere can swallow it,
so an interrupt sent while `burnish train` starts up could leave the run going on. The CLI
therefore installs `install()`'s handler, which records every interrupt before raising, and the
training loop calls `check()` at safe points (after start-up, between steps), so an interrupt
that some library lost still stops the run at the next step, with the usual "resume from"
message.

Inside the run's event loop the handler does what `asyncio.run` does by default: the first
interrupt cancels the run's main task (`watching`), so the run unwinds through its `finally`
blocks; a second one raises `KeyboardInterrupt` at once.

Library use (no `install()`) keeps Python's and asyncio's own behaviour: nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["check", "install", "reported", "requested", "watching"]

_count = 0
_task: asyncio.Task | None = None


def install() -> None:
    """Record interrupts from now on (the CLI calls this first); forgets earlier ones."""
    global _count
    _count = 0
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: Any) -> None:
    global _count
    _count += 1
    task = _task
    if _count == 1 and task is not None and not task.done():
        task.cancel()
        task.get_loop().call_soon_threadsafe(lambda: None)  # wake a loop waiting in select()
        return
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether an interrupt arrived since `install()`."""
    return _count > 0


def check() -> None:
    """Raise `KeyboardInterrupt` if an interrupt arrived (one that something else lost)."""
    if _count:
        raise KeyboardInterrupt


@contextlib.contextmanager
def watching(task: asyncio.Task | None) -> Iterator[None]:
    """Within the block, the first interrupt cancels ``task`` (the run's main task)."""
    global _task
    previous, _task = _task, task
    try:
        yield
    finally:
        _task = previous


@contextlib.contextmanager
def reported(run_dir: str | Path, resume_command: str) -> Iterator[None]:
    """For a command that trains: an interrupt in the block (also one that a library turned into
    another error on its way up) prints where the run can continue from and exits 130, as a
    shell does for SIGINT."""
    from burnish.train.checkpoint_index import list_checkpoints  # no torch: it may be loading

    try:
        yield
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - re-raised unless it is the interrupt
        if not (isinstance(e, KeyboardInterrupt) or requested()):
            raise
        checkpoints = list_checkpoints(Path(run_dir))
        if checkpoints:
            done = checkpoints[-1].name.removeprefix("step_")
            msg = (
                f"interrupted; {run_dir} can resume from {checkpoints[-1]} ({done} steps done):"
                f"\n  {resume_command}"
            )
        else:
            msg = (
                f"interrupted before the first checkpoint of {run_dir}: there is nothing to resume"
            )
        print(msg, file=sys.stderr)
        raise SystemExit(130) from None
