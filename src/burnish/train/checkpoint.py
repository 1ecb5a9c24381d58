"""Checkpoints: written atomically, resumed exactly.

`checkpoints/step_N/` holds the adapter (PEFT safetensors, loadable by PEFT and vLLM as is) or the
full weights, and `trainer.pt` with the optimizer, scheduler, RNG states, data cursor and monitor
state. A checkpoint is written into `step_N.tmp/` and renamed into place once complete, so a crash
while writing leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from burnish.models import save_adapter

_DONE = "COMPLETE"


@dataclass
class TrainerState:
    """Everything besides the weights that a resumed run needs."""

    step: int
    """Number of completed RL steps."""
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    cursor: dict[str, Any]
    """Data position: how many tasks each environment stream has yielded."""
    monitor: dict[str, Any]
    extra: dict[str, Any]


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


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save_checkpoint(run_dir: Path, policy, state: TrainerState, keep: int = 2) -> Path:
    """Write `checkpoints/step_{state.step}` atomically and prune old ones (keep the last `keep`)."""
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
    torch.save(state.__dict__, tmp / "trainer.pt")
    (tmp / _DONE).write_text("ok\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name.startswith("step_")
            and p.name[5:].isdigit()
            and (p / _DONE).exists()
        ):
            found.append((int(p.name[5:]), p))
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path, policy) -> TrainerState:
    """Load weights into `policy` (in place) and return the trainer state."""
    path = Path(path)
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
    raw = torch.load(path / "trainer.pt", weights_only=False)
    return TrainerState(**raw)
