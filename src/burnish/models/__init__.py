"""Models: loading, the tiny test model, LoRA through PEFT, sequence logprobs, CPU threads."""

from burnish.models.load import load_model
from burnish.models.logprobs import sequence_logprobs
from burnish.models.lora import (
    attach_lora,
    load_adapter,
    prepare_policy,
    reference_mode,
    save_adapter,
    trainable_parameters,
)
from burnish.models.threads import set_threads
from burnish.models.tiny import char_tokenizer, tiny_model

__all__ = [
    "attach_lora",
    "char_tokenizer",
    "load_adapter",
    "load_model",
    "prepare_policy",
    "reference_mode",
    "save_adapter",
    "sequence_logprobs",
    "set_threads",
    "tiny_model",
    "trainable_parameters",
]
