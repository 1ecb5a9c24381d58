from pathlib import Path

import pytest
from train_helpers import run_overrides

from burnish.config import load_config
from burnish.train import sinks as sinks_mod
from burnish.train.loop import train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_missing_sink_package_is_named(monkeypatch):
    monkeypatch.setitem(sinks_mod.SINKS, "wandb", ("no_such_package_xyz", object))
    cfg = load_config(None, ["log.sinks=['wandb']"])
    with pytest.raises(ValueError, match="no_such_package_xyz"):
        sinks_mod.build_sinks(cfg)


def test_sink_receives_every_step(tiny_dir, tmp_path, monkeypatch):
    logged = []

    class Recorder:
        def __init__(self, config):
            pass

        def log(self, step, metrics):
            logged.append((step, metrics["reward/mean"]))

        def close(self):
            logged.append("closed")

    monkeypatch.setitem(sinks_mod.SINKS, "mlflow", ("json", Recorder))
    train(load_config(None, run_overrides(tiny_dir, tmp_path / "r", "log.sinks=['mlflow']")))
    assert [s for s, *_ in logged[:-1]] == [0, 1, 2, 3]
    assert logged[-1] == "closed"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.name == "burnish-tiny"


def test_there_is_an_example_per_loss_and_env():
    names = {p.stem for p in EXAMPLES.glob("*.toml")}
    for loss in ("grpo", "dr_grpo", "dapo", "cispo", "gspo"):
        assert f"arithmetic_{loss}" in names
    for env in ("reverse", "guess_number", "calculator", "keywords"):
        assert env in names
