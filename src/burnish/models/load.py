"""Load a causal LM and its tokenizer from a Hugging Face hub id, a local path or `burnish-tiny`.

``burnish-tiny`` names the model shipped inside the package (``burnish/models/burnish_tiny/``),
built by ``burnish tiny pretrain --out DIR``. Local paths must exist and hold a model (a
``config.json``); anything else that is not an existing path is passed to ``from_pretrained``
unchanged as a hub id (which may download weights: only when the user names a hub model).

If the tokenizer has no pad token, its EOS token is used as pad (padding positions are always
masked, so the choice only matters for what the pad id is); the model's generation config gets
the same pad id.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from burnish.models.chat import attach_chat_format, chat_format
from burnish.models.wide_head import widen_head

__all__ = [
    "DTYPES",
    "TINY_NAME",
    "load_model",
    "load_tokenizer",
    "resolve_model_path",
    "tiny_model_dir",
]

TINY_NAME = "burnish-tiny"

# transformers renamed `torch_dtype` to `dtype` in 4.56.
_DTYPE_KWARG = (
    "dtype"
    if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)
    else "torch_dtype"
)

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
"""Allowed ``dtype`` names and what they mean ("auto": the checkpoint's own dtype)."""


def tiny_model_dir() -> Path:
    """Directory of the shipped ``burnish-tiny`` model (it may not be built yet)."""
    return Path(__file__).resolve().parent / "burnish_tiny"


def resolve_model_path(name_or_path: str | Path) -> str:
    """Turn a model name into what ``from_pretrained`` takes, checking local paths.

    Raises:
        FileNotFoundError: ``burnish-tiny`` is not built, or a local path is missing or holds
            no model.
    """
    name = str(name_or_path)
    if name == TINY_NAME:
        d = tiny_model_dir()
        if not (d / "config.json").is_file():
            raise FileNotFoundError(
                f"the {TINY_NAME} model is not built: {d} has no config.json. "
                f"Build it with `burnish tiny pretrain --out {d}`, or pass another model."
            )
        return str(d)
    path = Path(name).expanduser()
    looks_local = (
        path.exists()
        or name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or name.endswith((".json", ".safetensors", ".bin"))
    )
    if not looks_local:
        return name  # a hub id such as "Qwen/Qwen2.5-0.5B-Instruct"
    if not path.exists():
        raise FileNotFoundError(f"model path {name!r} does not exist")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model path {name!r} is not a model directory (expected a directory with "
            "config.json, as written by save_pretrained)"
        )
    return str(path)


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
    chat: dict | None = None,
) -> tuple[PreTrainedModel, object]:
    """Load ``(model, tokenizer)`` with the transformers Auto classes.

    Args:
        name_or_path: a hub id, a local directory, or ``"burnish-tiny"``.
        dtype: one of `DTYPES` ("float32", "bfloat16", "float16", "auto").
        device: where to put the model ("cpu", "cuda", "cuda:1", ...).
        trust_remote_code: passed to transformers (runs code from the model repository).
        chat: keyword arguments of `burnish.models.chat.chat_format` (`template_kwargs`,
            `reasoning`, `tool_format`).

    Returns:
        The model in eval mode and its tokenizer, with a pad token set (EOS if it had none) and
        the model's `ChatFormat` attached (`burnish.models.chat.chat_format_of` reads it). An
        LM head of a large vocabulary is made a `burnish.models.wide_head.WideHead`. Hub
        kernels are off (`_without_hub_kernels`): the model runs transformers' own torch code.

    Raises:
        ValueError: on an unknown ``dtype``.
        FileNotFoundError: see `resolve_model_path`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {sorted(DTYPES)}")
    source = resolve_model_path(name_or_path)
    tokenizer = _tokenizer(source, name_or_path, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        source, **{_DTYPE_KWARG: DTYPES[dtype]}, trust_remote_code=trust_remote_code
    )
    _without_hub_kernels(model)
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    attach_chat_format(tokenizer, chat_format(tokenizer, gen, **(chat or {})))
    widen_head(model)  # a large vocabulary's head, few rows at a time (burnish.models.wide_head)
    return model.to(device).eval(), tokenizer


def _without_hub_kernels(model: PreTrainedModel) -> None:
    """Turn off transformers' hub kernels (``use_kernels``, on by default where the ``kernels``
    package is installed), restoring transformers' own forwards.

    With them on, a module's forward may be replaced by code fetched from the hub, and every
    switch between train and eval mode re-kernelizes the whole model: about 6 ms at
    burnish-tiny, twice per sampling batch, on a CPU where no hub kernel applies. burnish's
    decode step and shared-prompt forward compute transformers' arithmetic and step aside for a
    replaced forward (`burnish.models.fast_decode`).
    """
    if getattr(model, "use_kernels", False):
        model.use_kernels = False  # transformers' setter: reset_kernels()


def load_tokenizer(
    name_or_path: str | Path, *, trust_remote_code: bool = False, chat: dict | None = None
) -> object:
    """The tokenizer of a model, with its pad token and `ChatFormat` set as `load_model` sets
    them, without loading weights (for a model served elsewhere: `burnish eval --base-url`)."""
    source = resolve_model_path(name_or_path)
    tokenizer = _tokenizer(source, name_or_path, trust_remote_code)
    try:
        gen = transformers.GenerationConfig.from_pretrained(source)
    except OSError:  # no generation_config.json: the tokenizer's own end tokens
        gen = None
    attach_chat_format(tokenizer, chat_format(tokenizer, gen, **(chat or {})))
    return tokenizer


def _tokenizer(source: str, name: str | Path, trust_remote_code: bool) -> object:
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer of {name!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
