"""A character-level tokenizer and a factory of tiny random models.

Tests across burnish build their models here (random init, fp32, in well under a second), and the
shipped `burnish-tiny` model uses the same tokenizer.

The tokenizer has one token per ASCII character (all 128 code points, so
``decode(encode(text)) == text`` for any ASCII text), an ``<|unk|>`` token for every other
character, and the special tokens of a minimal chat format::

    <|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>

``<|end|>`` is the EOS token and closes every message; ``add_generation_prompt`` appends
``<|assistant|>``. There is no BOS token.
"""

from __future__ import annotations

from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

__all__ = ["CHAT_TEMPLATE", "ROLES", "SPECIAL_TOKENS", "char_tokenizer", "tiny_model"]

ROLES = ("system", "user", "assistant", "tool")
"""Chat roles; each has a ``<|role|>`` token."""

SPECIAL_TOKENS = ("<|pad|>", "<|unk|>", "<|end|>") + tuple(f"<|{r}|>" for r in ROLES)
"""Special tokens, in id order (ids 0..6); the characters follow."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{ raise_exception('unknown role ' ~ message['role'] ~ "
    "'; allowed: system, user, assistant, tool') }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""Jinja chat template: ``<|role|>content<|end|>`` per message, then ``<|assistant|>``."""


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (vocabulary: 7 special tokens + 128 ASCII chars).

    Returns:
        A fast tokenizer with pad ``<|pad|>``, unk ``<|unk|>``, eos ``<|end|>`` and the chat
        template above. It round-trips through ``save_pretrained`` / ``AutoTokenizer``.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for code in range(128):
        vocab[chr(code)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    # Every character is its own piece ([\s\S] also matches newlines).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        eos_token="<|end|>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


_ARCHS = {  # config class, model class
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


def _config(config_cls, vocab: int, hidden: int, layers: int, heads: int, max_pos: int):
    return config_cls(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_pos,
        tie_word_embeddings=False,
    )


def tiny_model(
    arch: Literal["llama", "qwen2"] = "llama",
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position: int = 1024,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised causal LM sized for tests, with its tokenizer.

    Args:
        arch: "llama" or "qwen2" (the architectures vLLM and PEFT cover best).
        hidden_size: model width; must be divisible by ``num_heads``.
        num_layers: transformer blocks.
        num_heads: attention heads (no grouped-query attention).
        max_position: longest sequence (prompt + completion) the model accepts.
        seed: the initialisation is a pure function of the seed (the global RNG is untouched).
        tokenizer: the tokenizer to size the vocabulary for; default `char_tokenizer()`.

    Returns:
        ``(model, tokenizer)``: an fp32 model in eval mode whose generation config has the
        tokenizer's EOS and pad ids.

    Raises:
        ValueError: on an unknown ``arch`` or a width not divisible by the head count.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown tiny-model arch {arch!r}; allowed: {sorted(_ARCHS)}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    tok = tokenizer if tokenizer is not None else char_tokenizer()
    config_cls, model_cls = _ARCHS[arch]
    config = _config(config_cls, len(tok), hidden_size, num_layers, num_heads, max_position)
    config.bos_token_id = tok.bos_token_id
    config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_cls(config)
    finally:
        torch.random.set_rng_state(rng_state)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )
    return model.float().eval(), tok
