"""Small models for tests that compare forwards: a LoRA policy with a non-zero adapter, and
grouped-query Qwen2 and Mistral models."""

import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

from burnish.models.lora import attach_lora
from burnish.models.tiny import char_tokenizer, tiny_model


def nonzero_lora_policy(*, arch="llama", hidden_size=32, num_layers=2, num_heads=2, seed=0):
    """A tiny model with a rank-4 adapter whose B is random (PEFT starts it at zero)."""
    base, _ = tiny_model(arch, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, seed=seed)  # fmt: skip
    return random_lora(base, seed=seed)


def random_lora(model, *, seed=0):
    """``model`` with a rank-4 adapter attached and its B drawn at random (PEFT starts it at
    zero, where the adapter changes nothing)."""
    policy = attach_lora(model, rank=4, alpha=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return policy


def grouped_model(kind: str):
    """A random 2-layer Qwen2 (biases on q, k and v) or Mistral with grouped-query attention
    (4 query heads, 2 key/value), in eval mode, with its tokenizer."""
    tok = char_tokenizer()
    shape = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(3)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    else:
        model = MistralForCausalLM(MistralConfig(sliding_window=None, **shape))
    return model.float().eval(), tok
