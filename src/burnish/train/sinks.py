"""Optional metric sinks (TensorBoard, Weights & Biases, MLflow), off by default.

The run store is always written; a sink mirrors each step's numeric metrics elsewhere. A sink
named in the config whose package is not installed is a configuration error (raised at start,
naming the package to install), not a silent no-op.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any, Protocol

from burnish.config import RunConfig


class Sink(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
    }


class TensorBoardSink:
    """TensorBoard event files in `<run_dir>/tensorboard` (`tensorboard --logdir` reads them)."""

    def __init__(self, config: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(config.log.run_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in _numeric(metrics).items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """Weights & Biases. The mode is `WANDB_MODE` when set, else online with `WANDB_API_KEY` and
    offline without (files under `<run_dir>/wandb/`, `wandb sync` uploads them later)."""

    def __init__(self, config: RunConfig) -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE") or (
            "online" if os.environ.get("WANDB_API_KEY") else "offline"
        )
        self.run = wandb.init(
            project=config.log.project,
            dir=config.log.run_dir,
            config=config.model_dump(mode="json"),
            mode=mode,
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(_numeric(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowSink:
    """MLflow. The tracking server is `MLFLOW_TRACKING_URI` when set, else a local file store in
    `<run_dir>/mlruns` (`mlflow ui --backend-store-uri <run_dir>/mlruns` shows it)."""

    def __init__(self, config: RunConfig) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (Path(config.log.run_dir) / "mlruns").resolve().as_uri()
            # MLflow 3 keeps the file store behind an opt-in; a local run needs no database
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(config.log.project)
        mlflow.start_run(run_name=Path(config.log.run_dir).name)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        # MLflow metric names may not contain '@'
        self.mlflow.log_metrics(
            {k.replace("@", "_at_"): v for k, v in _numeric(metrics).items()}, step=step
        )

    def close(self) -> None:
        self.mlflow.end_run()


SINKS: dict[str, tuple[str, type]] = {
    "tensorboard": ("tensorboard", TensorBoardSink),
    "wandb": ("wandb", WandbSink),
    "mlflow": ("mlflow", MlflowSink),
}


def build_sinks(config: RunConfig) -> list[Sink]:
    """The sinks `log.sinks` names, each started.

    Raises:
        ValueError: a named sink's package is not installed (the message says what to install).
    """
    sinks = []
    for name in config.log.sinks:
        package, cls = SINKS[name]
        if importlib.util.find_spec(package) is None:
            raise ValueError(
                f"log.sinks names {name!r} but the package {package!r} is not installed: "
                f"pip install 'burnish[{name}]'"
            )
        sinks.append(cls(config))
    return sinks
