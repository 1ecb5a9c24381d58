"""LoRA adapters through PEFT, full fine-tuning, and the reference policy.

The policy is either the base model with a LoRA adapter (the default: the reference policy is the
same model with the adapter disabled, so no second copy of the weights is kept) or the whole
model (full fine-tuning: a reference policy then needs a frozen copy, which `reference_mode`
refuses to fake).

Adapters are saved in PEFT's own format (``adapter_config.json`` + ``adapter_model.safetensors``)
so that PEFT, vLLM (``--enable-lora`` / ``/v1/load_lora_adapter``) and ``burnish serve`` load them
unchanged.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from burnish.models.lean_lora import make_lean

__all__ = [
    "BASE_ROW",
    "DEFAULT_TARGET_MODULES",
    "RowAdapters",
    "attach_lora",
    "is_lora",
    "load_adapter",
    "prepare_policy",
    "reference_mode",
    "save_adapter",
    "trainable_parameters",
]

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_GATED_MLP = ("gate_proj", "up_proj", "down_proj")

DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "llama": _ATTN + _GATED_MLP,
    "mistral": _ATTN + _GATED_MLP,
    "mixtral": _ATTN,  # experts are left alone: LoRA on every expert is rarely what one wants
    "qwen2": _ATTN + _GATED_MLP,
    "qwen3": _ATTN + _GATED_MLP,
    "qwen2_moe": _ATTN,
    "qwen3_moe": _ATTN,
    "gemma": _ATTN + _GATED_MLP,
    "gemma2": _ATTN + _GATED_MLP,
    "gemma3_text": _ATTN + _GATED_MLP,
    "granite": _ATTN + _GATED_MLP,
    "olmo": _ATTN + _GATED_MLP,
    "olmo2": _ATTN + _GATED_MLP,
    "smollm3": _ATTN + _GATED_MLP,
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}
"""Attention and MLP projections to adapt, per ``config.model_type``."""


def is_lora(model: torch.nn.Module) -> bool:
    """Whether the model is a PEFT model (a base model with adapters)."""
    return isinstance(model, PeftModel)


def _model_type(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", type(model).__name__))


def attach_lora(
    model: torch.nn.Module,
    *,
    rank: int = 16,
    alpha: float = 32,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str | None = None,
    adapter_name: str = "default",
) -> PeftModel:
    """Wrap a base model with a fresh LoRA adapter; only the adapter is trainable.

    The adapter starts as the identity (PEFT initialises ``B = 0``), so the wrapped model
    computes exactly what the base model does until the first optimizer step.

    Args:
        model: a transformers causal LM.
        rank: LoRA rank r.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / rank``).
        dropout: dropout on the adapter input (0 keeps sampling and training consistent).
        target_modules: module names to adapt (or PEFT's ``"all-linear"``); default from
            `DEFAULT_TARGET_MODULES` for the model's architecture.
        adapter_name: PEFT adapter name.

    Returns:
        The `PeftModel`.

    Raises:
        ValueError: on a bad rank or an architecture without default targets and no
            ``target_modules``.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if target_modules is None:
        model_type = _model_type(model)
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ValueError(
                f"no default LoRA target modules for architecture {model_type!r}; pass "
                f"target_modules (module names, or 'all-linear'). Known architectures: "
                f"{sorted(DEFAULT_TARGET_MODULES)}"
            )
        target_modules = DEFAULT_TARGET_MODULES[model_type]
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    policy = get_peft_model(model, config, adapter_name=adapter_name)
    make_lean(policy)  # PEFT's forward without its per-call bookkeeping (bit-identical)
    return policy


def prepare_policy(
    model: torch.nn.Module,
    *,
    lora: bool = True,
    rank: int = 16,
    alpha: float = 32,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str | None = None,
) -> torch.nn.Module:
    """Make a base model trainable: attach a LoRA adapter, or unfreeze every weight.

    Args:
        model: the base model.
        lora: True for a LoRA adapter (see `attach_lora` for the other arguments), False for
            full fine-tuning (all parameters trainable; no built-in reference policy).

    Returns:
        The policy (a `PeftModel` with LoRA, else the model itself), in train mode.
    """
    if lora:
        policy = attach_lora(
            model, rank=rank, alpha=alpha, dropout=dropout, target_modules=target_modules
        )
    else:
        policy = model
        for p in policy.parameters():
            p.requires_grad_(True)
    return policy.train()


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimizer should update (those with ``requires_grad``)."""
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def reference_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run the model as its reference policy: the base model with every adapter disabled.

    Raises:
        TypeError: if the model has no adapter (full fine-tuning keeps no reference weights;
            load a frozen copy of the base model instead).
    """
    if not is_lora(model):
        raise TypeError(
            f"reference_mode needs a LoRA (PEFT) model, got {type(model).__name__}; with full "
            "fine-tuning use a separate frozen copy of the base model as the reference"
        )
    with model.disable_adapter():
        yield model


def save_adapter(
    model: PeftModel, directory: str | Path, *, adapter_name: str | None = None
) -> Path:
    """Save one adapter in PEFT's format directly in ``directory``.

    PEFT itself puts adapters other than "default" in a subdirectory; here the files always land
    in ``directory`` so that the path can be handed to PEFT or vLLM as is.

    Args:
        model: the PEFT model.
        directory: output directory (created; existing adapter files are overwritten).
        adapter_name: which adapter; default the active one.

    Returns:
        The directory.
    """
    if not is_lora(model):
        raise TypeError(f"save_adapter needs a PEFT model, got {type(model).__name__}")
    name = adapter_name or model.active_adapter
    if name not in model.peft_config:
        raise ValueError(f"unknown adapter {name!r}; loaded: {sorted(model.peft_config)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        model.save_pretrained(tmp, selected_adapters=[name])
        src = Path(tmp) if name == "default" else Path(tmp) / name
        for f in src.iterdir():
            if f.is_file():
                shutil.move(str(f), str(out / f.name))
    return out


def load_adapter(
    model: torch.nn.Module,
    directory: str | Path,
    *,
    adapter_name: str = "default",
    is_trainable: bool = False,
) -> PeftModel:
    """Load a saved adapter onto a base model (or add it to a PEFT model under a new name).

    Args:
        model: a base model, or a `PeftModel` to add the adapter to.
        directory: a directory written by `save_adapter` (or any PEFT LoRA adapter).
        adapter_name: name to load it under.
        is_trainable: whether its weights get ``requires_grad`` (to continue training).

    Returns:
        The `PeftModel` (the given one when it already was one). The loaded adapter is active
        only when the model was a base model; otherwise select it with ``set_adapter``.

    Raises:
        FileNotFoundError: if the directory has no ``adapter_config.json``.
    """
    path = Path(directory)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a PEFT adapter (no adapter_config.json)")
    if is_lora(model):
        model.load_adapter(str(path), adapter_name=adapter_name, is_trainable=is_trainable)
    else:
        model = PeftModel.from_pretrained(
            model, str(path), adapter_name=adapter_name, is_trainable=is_trainable
        )
    make_lean(model)
    return model


BASE_ROW = "__base__"
"""The adapter name of a row that runs through the base model in a mixed-adapter batch (PEFT's
own placeholder)."""


class RowAdapters:
    """Run every row of a batch through its own LoRA adapter (PEFT mixed-adapter batches).

    Inside the ``with`` block every LoRA layer of ``model`` receives ``adapter_names=names`` in
    its forward (as ``PeftModel.forward(..., adapter_names=...)`` does with hooks), so row ``i``
    of each forward pass uses adapter ``names[i]`` (`BASE_ROW`: none). Assign ``names`` between
    forward passes when the batch's rows change. Works on a PEFT model or on its base model (the
    LoRA layers live inside it); the model must be in eval mode with no merged adapter.

    Raises (on entry):
        ValueError: if a name is not an adapter of the model.
    """

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        self.model = model
        self.names = list(names)
        self._handles: list = []

    def __enter__(self) -> RowAdapters:
        layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        known = {name for layer in layers for name in layer.lora_A}
        unknown = set(self.names) - known - {BASE_ROW}
        if unknown:
            raise ValueError(
                f"rows name adapters the model does not have: {sorted(unknown)}; loaded: "
                f"{sorted(known)} (or {BASE_ROW!r} for the base model)"
            )
        self._handles = [
            layer.register_forward_pre_hook(self._inject, with_kwargs=True) for layer in layers
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _inject(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "adapter_names": self.names}
