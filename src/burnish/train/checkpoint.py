"""Checkpoints: written atomically, resumed exactly, and loaded without unpickling objects.

`checkpoints/step_N/` holds the adapter (PEFT safetensors, loadable by PEFT and vLLM as is) or the
full weights (`model.safetensors`), and the trainer state in two files that hold data only:

- `trainer.pt`: the optimizer and scheduler state dicts and the torch RNG state: tensors and
  plain containers, written with `torch.save` and read back with `torch.load(weights_only=True)`,
  which refuses any pickled object (a tampered file cannot run code on `--resume`);
- `trainer.json`: the step, the data cursor, the monitor state, `extra`, and the Python and
  NumPy RNG states as numbers.

A checkpoint is written into `step_N.tmp/` and renamed into place once complete, so a crash
while writing leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from burnish.models import save_adapter
from burnish.train.checkpoint_index import DONE as _DONE
from burnish.train.checkpoint_index import list_checkpoints

FORMAT = 2
"""Version of the trainer-state files (1: a pickled `trainer.pt`, which is not loaded)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read safely; the message names the file and why."""


@dataclass
class TrainerState:
    """Everything besides the weights that a resumed run needs."""

    step: int
    """Number of completed RL steps."""
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    """`rng_state()`: torch, numpy and python RNG states."""
    cursor: dict[str, Any]
    """Data position: how many tasks each environment stream has yielded."""
    monitor: dict[str, Any]
    """JSON data (tuples come back as lists)."""
    extra: dict[str, Any]
    """JSON data (tuples come back as lists)."""


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _numpy_to_json(state: Any) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "bit_generator": str(name),
        "keys": [int(k) for k in keys],
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_from_json(d: dict[str, Any]) -> tuple:
    keys = np.array(d["keys"], dtype=np.uint32)
    return (
        d["bit_generator"],
        keys,
        int(d["pos"]),
        int(d["has_gauss"]),
        float(d["cached_gaussian"]),
    )


def _python_to_json(state: Any) -> list[Any]:
    version, internal, gauss_next = state
    return [int(version), [int(x) for x in internal], gauss_next]


def _python_from_json(d: list[Any]) -> tuple:
    version, internal, gauss_next = d
    return (int(version), tuple(int(x) for x in internal), gauss_next)


def _plain(value: Any, where: str) -> Any:
    """`value` as JSON data (tuples as lists), or CheckpointError naming the first bad part."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) in (int, float):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise CheckpointError(
                f"checkpoint state {where}: key {bad[0]!r} is not a string (JSON keys are strings)"
            )
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(
        f"checkpoint state {where}: {type(value).__name__} is not JSON data "
        "(allowed: dict with str keys, list, tuple, str, int, float, bool, None)"
    )


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save_checkpoint(run_dir: Path, policy, state: TrainerState, keep: int = 2) -> Path:
    """Write `checkpoints/step_{state.step}` atomically and prune old ones (keep the last `keep`).

    Raises:
        CheckpointError: `cursor`, `monitor` or `extra` hold something that is not JSON data.
    """
    meta = {
        "format": FORMAT,
        "step": int(state.step),
        "cursor": _plain(state.cursor, "cursor"),
        "monitor": _plain(state.monitor, "monitor"),
        "extra": _plain(state.extra, "extra"),
        "rng": {
            "numpy": _numpy_to_json(state.rng["numpy"]),
            "python": _python_to_json(state.rng["python"]),
        },
    }
    tensors = {
        "format": FORMAT,
        "optimizer": state.optimizer,
        "scheduler": state.scheduler,
        "torch_rng": state.rng["torch"],
    }
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{state.step}"
    tmp = root / f"step_{state.step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if _is_peft(policy):
        save_adapter(policy, tmp / "adapter")
    else:
        weights = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
    torch.save(tensors, tmp / "trainer.pt")
    (tmp / "trainer.json").write_text(json.dumps(meta), encoding="utf-8")
    (tmp / _DONE).write_text("ok\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_trainer_state(path: Path) -> TrainerState:
    pt, js = path / "trainer.pt", path / "trainer.json"
    older = (
        "a checkpoint written by an older burnish pickled its trainer state, which is not "
        "loaded; start the run afresh or resume from a newer checkpoint"
    )
    if not js.is_file():
        raise CheckpointError(f"checkpoint {path}: trainer.json is missing ({older})")
    try:
        tensors = torch.load(pt, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: trainer.pt is missing") from None
    except Exception as e:  # UnpicklingError and its kin: the file holds more than data
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path}: trainer.pt was not loaded: it holds more than tensors and plain "
            f"containers (a pickled object), so it is either not written by this burnish or "
            f"tampered with; nothing in it was run. Detail: {first}"
        ) from None
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: trainer.json is not valid JSON: {e}") from None
    formats = (tensors.get("format") if isinstance(tensors, dict) else None, meta.get("format"))
    if formats != (FORMAT, FORMAT):
        raise CheckpointError(
            f"checkpoint {path}: trainer state format {formats}, this burnish reads {FORMAT}"
        )
    try:
        rng = {
            "torch": tensors["torch_rng"],
            "numpy": _numpy_from_json(meta["rng"]["numpy"]),
            "python": _python_from_json(meta["rng"]["python"]),
        }
        return TrainerState(
            step=int(meta["step"]),
            optimizer=tensors["optimizer"],
            scheduler=tensors["scheduler"],
            rng=rng,
            cursor=meta["cursor"],
            monitor=meta["monitor"],
            extra=meta["extra"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: trainer state is incomplete: {e!r}") from None


def load_checkpoint(path: Path, policy) -> TrainerState:
    """Load weights into `policy` (in place) and return the trainer state.

    The trainer state is read first, so a checkpoint that is refused leaves `policy` untouched.

    Raises:
        CheckpointError: the trainer state is missing, of another format, or holds pickled
            objects (never unpickled).
    """
    path = Path(path)
    state = _load_trainer_state(path)
    if _is_peft(policy):
        from peft import set_peft_model_state_dict

        adapter = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(policy, adapter)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(
                f"checkpoint {path} has adapter keys the model lacks: {unexpected[:5]}"
            )
    else:
        policy.load_state_dict(load_file(str(path / "model.safetensors")))
    return state
