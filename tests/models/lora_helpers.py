"""A small LoRA policy with a non-zero adapter, for tests that compare forwards."""

import torch

from burnish.models.lora import attach_lora
from burnish.models.tiny import tiny_model


def nonzero_lora_policy(*, arch="llama", hidden_size=32, num_layers=2, num_heads=2, seed=0):
    """A tiny model with a rank-4 adapter whose B is random (PEFT starts it at zero)."""
    base, _ = tiny_model(arch, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, seed=seed)  # fmt: skip
    policy = attach_lora(base, rank=4, alpha=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return policy
