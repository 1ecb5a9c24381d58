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
    with pytest.raises(SystemExit) as exit_info, interrupts.reported() as where:
        where.at(tmp_path, "burnish train c.toml --resume")
        raise ModuleNotFoundError(
            "Could not import module 'PreTrainedModel'"
        )  # as transformers does
    assert exit_info.value.code == 130
    assert "interrupted before the first checkpoint" in capsys.readouterr().err


def test_reported_leaves_other_errors_alone(installed, tmp_path):
    with pytest.raises(ModuleNotFoundError), interrupts.reported() as where:
        where.at(tmp_path, "x")
        raise ModuleNotFoundError("no interrupt: a real missing module")


def _busy() -> int:
    """Bytecodes for a pending signal handler to run between."""
    return sum(range(10_000))


def test_while_a_run_starts_up_the_first_interrupt_waits(installed, tmp_path, capfd):
    """An interrupt during start-up (imports, config validation) is recorded, not raised into
    them; the run stops once start-up is done, at the loop's `check()`, and here at the block's
    end."""
    reached = False
    with pytest.raises(SystemExit) as exit_info, interrupts.reported() as where:
        os.kill(os.getpid(), signal.SIGINT)
        _busy()
        reached = True  # nothing was raised into the "imports"
        assert interrupts.requested()
        where.at(tmp_path, "burnish train c.toml --resume")
    assert reached and exit_info.value.code == 130
    err = capfd.readouterr().err
    assert "Ctrl-C again stops it now" in err and "interrupted before the first checkpoint" in err


def test_a_second_interrupt_during_start_up_raises_at_once(installed, capsys):
    after_second = False
    with pytest.raises(SystemExit) as exit_info, interrupts.reported():
        os.kill(os.getpid(), signal.SIGINT)
        _busy()
        os.kill(os.getpid(), signal.SIGINT)
        _busy()
        after_second = True
    assert not after_second and exit_info.value.code == 130
    assert "interrupted before the run started" in capsys.readouterr().err


def test_outside_reported_an_interrupt_raises_as_usual(installed):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        _busy()
    assert interrupts.requested()
