"""An interrupt always stops a run: also one that a library swallowed or turned into another
error while the run started (`burnish.interrupts`)."""

import os
import signal

import pytest
from train_helpers import run_overrides

from burnish import interrupts
from burnish.config import load_config
from burnish.store import RunStore
from burnish.train.checkpoint import list_checkpoints
from burnish.train.loop import train


@pytest.fixture
def installed():
    previous = signal.getsignal(signal.SIGINT)
    interrupts.install()
    yield
    signal.signal(signal.SIGINT, previous)
    interrupts.install()  # forget this test's interrupts
    signal.signal(signal.SIGINT, previous)


def _swallowed_interrupt() -> None:
    """What a library's broad handler does to an interrupt raised while it imports."""
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the handler raises at the next bytecode boundary
        for _ in range(1000):
            pass
    except KeyboardInterrupt:
        pass


def test_an_interrupt_a_library_swallowed_stops_the_run_before_its_first_step(
    installed, tiny_dir, tmp_path
):
    run = tmp_path / "r"
    _swallowed_interrupt()
    assert interrupts.requested()
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, run_overrides(tiny_dir, run, "train.steps=3")))
    assert not list_checkpoints(run)
    assert not (run / "run.db").exists() or not RunStore(run / "run.db").steps()


def test_an_interrupt_during_the_steps_cancels_the_run_at_once(installed, tiny_dir, tmp_path):
    run, seen = tmp_path / "r", []

    def on_step(step, _metrics):
        seen.append(step)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # cancels the run's main task

    cfg = load_config(
        None, run_overrides(tiny_dir, run, "train.steps=50", "train.checkpoint_every=1")
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=on_step)
    assert seen == [0, 1]  # no further step started
    assert [p.name for p in list_checkpoints(run)] == ["step_1", "step_2"]  # nothing lost


def test_reported_turns_an_interrupt_into_the_resume_message(installed, tmp_path, capsys):
    _swallowed_interrupt()
    with (
        pytest.raises(SystemExit) as exit_info,
        interrupts.reported(tmp_path, "burnish train c.toml --resume"),
    ):
        raise ModuleNotFoundError(
            "Could not import module 'PreTrainedModel'"
        )  # as transformers does
    assert exit_info.value.code == 130
    assert "interrupted before the first checkpoint" in capsys.readouterr().err


def test_reported_leaves_other_errors_alone(installed, tmp_path):
    with pytest.raises(ModuleNotFoundError), interrupts.reported(tmp_path, "x"):
        raise ModuleNotFoundError("no interrupt: a real missing module")
