"""Tiny random models with the real chat templates and special tokens of popular releases.

Each fixture is a directory `load_model` can read: a 2-layer model (hidden size 64) of the
release's architecture, a byte-level BPE tokenizer trained here on a small corpus (vocabulary
~700) with the release's special tokens, its real chat template (`tests/fixtures/
chat_templates/`) and its generation config's end-of-sequence ids.

    python tests/chat/real_models.py OUT_DIR      # build every fixture under OUT_DIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "chat_templates"
ARCHS = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}
CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3 = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
]
MISTRAL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"]
MISTRAL += ["[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
GEMMA = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


@dataclass(frozen=True)
class Fixture:
    """One release's chat format on a tiny model."""

    arch: str
    template: str
    special: list[str]
    eos: str
    gen_eos: list[str]
    bos: str | None = None
    pad: str | None = None
    unk: str | None = None
    added: list[str] = field(default_factory=list)
    """Added tokens that are not special (Qwen's `<tool_call>`, `<think>`)."""


QWEN_ADDED = ["<tool_call>", "</tool_call>"]
FIXTURES = {
    "qwen2.5": Fixture(
        "qwen2",
        "qwen2_5_instruct.jinja",
        CHATML,
        "<|im_end|>",
        ["<|im_end|>", "<|endoftext|>"],
        pad="<|endoftext|>",
        added=QWEN_ADDED,
    ),
    "qwen3": Fixture(
        "qwen3",
        "qwen3.jinja",
        CHATML,
        "<|im_end|>",
        ["<|im_end|>", "<|endoftext|>"],
        pad="<|endoftext|>",
        added=[*QWEN_ADDED, "<think>", "</think>", "<tool_response>", "</tool_response>"],
    ),
    "llama3.1": Fixture(
        "llama",
        "llama3_1_instruct.jinja",
        LLAMA3,
        "<|eot_id|>",
        ["<|eot_id|>"],
        bos="<|begin_of_text|>",
    ),
    "llama3.1-end-of-text": Fixture(
        "llama",
        "llama3_1_instruct.jinja",
        LLAMA3,
        "<|end_of_text|>",
        ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>",
    ),
    "smollm2": Fixture(
        "llama",
        "smollm2.jinja",
        CHATML,
        "<|im_end|>",
        ["<|im_end|>"],
        bos="<|im_start|>",
        pad="<|im_end|>",
    ),
    "mistral-v0.3": Fixture(
        "mistral", "mistral_instruct_v0_3.jinja", MISTRAL, "</s>", ["</s>"], bos="<s>", unk="<unk>"
    ),
    "gemma2": Fixture(
        "llama",
        "gemma2.jinja",
        GEMMA,
        "<eos>",
        ["<eos>", "<end_of_turn>"],
        bos="<bos>",
        pad="<pad>",
        unk="<unk>",
    ),
}
"""Fixture name -> its release's format. The two Llama 3.1 fixtures differ in the tokenizer's
EOS: `<|eot_id|>`, or `<|end_of_text|>` with `<|eot_id|>` named only by the generation config."""


def _corpus() -> list[str]:
    words = "Guess my number higher lower correct say a from to the answer is think let me "
    words += "calculator expression result tool call function name arguments parameters "
    words += "You are helpful assistant system user model Tools Today Date December "
    lines = [words * 2]
    for i in range(0, 1200, 7):
        lines.append(
            f'{i} {i}*{i % 97}+{i % 13}=? {{"name": "calculator", "arguments": '
            f'{{"expression": "{i}*7"}}}} {i}-{i + 15}.'
        )
    return lines


def build_tokenizer(
    fx: Fixture, vocab_size: int = 700, corpus: Iterable[str] | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with `fx`'s special and added tokens and chat template,
    trained to at most `vocab_size` tokens on `corpus` (default a small built-in one)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*fx.special, *fx.added],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() if corpus is None else corpus, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fx.special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in fx.added])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fx.bos,
        eos_token=fx.eos,
        pad_token=fx.pad,
        unk_token=fx.unk,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.chat_template = (TEMPLATES / fx.template).read_text()
    return fast


def build_fixture(name: str, out: Path, seed: int = 0) -> Path:
    """Write fixture `name` to `out` (a directory `burnish.models.load_model` reads)."""
    fx = FIXTURES[name]
    tok = build_tokenizer(fx)
    config_cls, model_cls = ARCHS[fx.arch]
    config = config_cls(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.convert_tokens_to_ids(fx.gen_eos),
        pad_token_id=tok.pad_token_id,
    )
    if fx.arch == "qwen3":
        config.head_dim = 16
    torch.manual_seed(seed)
    model = model_cls(config).float().eval()
    model.generation_config = GenerationConfig(
        eos_token_id=tok.convert_tokens_to_ids(fx.gen_eos),
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "burnish_fixture.json").write_text(json.dumps({"name": name, "template": fx.template}))
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1])
    for fixture in FIXTURES:
        print(build_fixture(fixture, root / fixture))
