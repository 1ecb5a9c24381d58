"""The tracking sinks against the real packages: each one's own reader sees every step."""

import glob
import struct

import pytest
from train_helpers import run_overrides

from burnish.config import load_config
from burnish.train.loop import train

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")


@pytest.fixture(scope="module")
def sink_run(tiny_dir, tmp_path_factory):
    """One 3-step run writing to all three sinks, offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path_factory.mktemp("sinks") / "run"
    sinks = "log.sinks=['tensorboard', 'mlflow', 'wandb']"
    train(load_config(None, run_overrides(tiny_dir, run, "train.steps=3", sinks)))
    mp.undo()
    return run


def test_tensorboard_events_read_by_tensorboard(sink_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(sink_run / "tensorboard"))
    acc.Reload()
    assert "reward/mean" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("reward/mean")] == [0, 1, 2]


def test_mlflow_file_store_holds_the_metrics(sink_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(sink_run / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("burnish")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "reward/mean")
    assert sorted(m.step for m in history) == [0, 1, 2]


def wandb_records(path):
    """The protobuf records of a `.wandb` file (wandb's LevelDB-style log: a 7-byte file header,
    32 KiB blocks, each chunk a 7-byte header of crc32, length and type 1 full, 2 first,
    3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", "not a wandb log"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in the block for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            yield rec


def test_wandb_offline_run_records_every_step(sink_run):
    (path,) = glob.glob(str(sink_run / "wandb" / "offline-run-*" / "run-*.wandb"))
    steps = []
    for rec in wandb_records(path):
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
            if "reward/mean" in items:
                steps.append(int(items["_step"]))
    assert steps == [0, 1, 2]
