"""Ctrl-C (SIGINT) that a long run cannot lose.

Python turns SIGINT into a `KeyboardInterrupt` raised wherever the main thread happens to be, and
third-party code does not always let it through: transformers' lazy imports turn one raised
while a module loads into a `ModuleNotFoundError`, and a broad handler elsewhere can swallow it,
so an interrupt sent while `burnish train` starts up could leave the run going on, or leave an
import half done (numpy then refuses to load twice, and a native extension can abort the process
as it exits). The CLI therefore installs `install()`'s handler, which records every interrupt.

A command that trains runs inside `reported()`, which also defers interrupts while the run starts
up: outside the run's event loop the first interrupt is only recorded (with a note on stderr), so
no import or config validation is cut in half; the loop calls `check()` once start-up is done and
between steps, and the run stops there with the usual "resume from" message. A second interrupt
raises `KeyboardInterrupt` at once, for a start-up that hangs.

Inside the run's event loop the handler does what `asyncio.run` does by default: the first
interrupt cancels the run's main task (`watching`), so the run unwinds through its `finally`
blocks; a second one raises `KeyboardInterrupt` at once.

Library use (no `install()`) keeps Python's and asyncio's own behaviour: nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Resume", "check", "install", "reported", "requested", "watching"]

_count = 0
_task: asyncio.Task | None = None
_deferring = False
_DEFERRED_NOTE = b"interrupt: the run stops once it has started up (Ctrl-C again stops it now)\n"


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
    if _count == 1 and _deferring:
        os.write(2, _DEFERRED_NOTE)  # not print(): the handler may run inside a write to stderr
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


@dataclass
class Resume:
    """Where an interrupted run can continue from; `reported()` fills it in once it is known."""

    run_dir: Path | None = None
    command: str = ""

    def at(self, run_dir: str | Path, command: str) -> None:
        self.run_dir, self.command = Path(run_dir), command


@contextlib.contextmanager
def reported() -> Iterator[Resume]:
    """For a command that trains. In the block, interrupts outside the run's event loop are
    deferred (the module docstring says why), and an interrupt (also one that a library turned
    into another error on its way up) prints where the run can continue from and exits 130, as a
    shell does for SIGINT. Call `.at(run_dir, resume_command)` on the yielded record once the
    config is loaded."""
    global _deferring
    resume, previous = Resume(), _deferring
    _deferring = True
    try:
        yield resume
        check()  # one that came after the run's last step
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - re-raised unless it is the interrupt
        if not (isinstance(e, KeyboardInterrupt) or requested()):
            raise
        print(_where(resume), file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        _deferring = previous


def _where(resume: Resume) -> str:
    from burnish.train.checkpoint_index import list_checkpoints  # no torch: it may be loading

    if resume.run_dir is None:
        return "interrupted before the run started: there is nothing to resume"
    checkpoints = list_checkpoints(resume.run_dir)
    if not checkpoints:
        return f"interrupted before the first checkpoint of {resume.run_dir}: there is nothing to resume"
    done = checkpoints[-1].name.removeprefix("step_")
    return (
        f"interrupted; {resume.run_dir} can resume from {checkpoints[-1]} ({done} steps done):"
        f"\n  {resume.command}"
    )
