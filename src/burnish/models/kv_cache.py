"""A KV cache for the decode loop that writes each new token in place instead of concatenating.

transformers' `DynamicLayer` grows its keys and values with ``torch.cat`` at every decode step,
which copies the whole cache each time, so the copies grow with the completion: at the 34m
benchmark size (32 rows, 8 layers) a 256-token decode ran 1.28x faster without them, a 32-token
one 1.01x (`benchmarks/decode.py --change kv-cache`, docs/performance.md §2). `ReservedLayer`
keeps the same contract (its ``keys``/``values`` are exactly the tokens seen so far, so masks,
positions and attention are unchanged) but, on its first update, allocates room for the prompt
plus ``extra`` more tokens and then copies only the new token into that room. It departs from
transformers' `StaticLayer` on purpose: a static layer hands attention the whole preallocated
length (masked), where this one hands it only the filled part.

`reserved_cache` builds a cache of such layers for a model whose every layer would get a plain
`DynamicLayer`; for anything else (sliding windows, hybrid or linear-attention layers, a
transformers without the layer API) it returns None and the model builds its own cache.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ReservedLayer", "reserved_cache"]

try:
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # a transformers before the cache-layer API: the model's own cache is used
    DynamicCache = DynamicLayer = None  # type: ignore[assignment,misc]


if DynamicLayer is not None:

    class ReservedLayer(DynamicLayer):  # type: ignore[misc,valid-type]
        """A `DynamicLayer` with room reserved for ``extra`` tokens after its first update."""

        def __init__(self, extra: int) -> None:
            super().__init__()
            self.extra = extra
            self._filled = 0

        def update(
            self, key_states: Tensor, value_states: Tensor, *args, **kwargs
        ) -> tuple[Tensor, Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self._room_k = _room(key_states, key_states.shape[-2] + self.extra)
                self._room_v = _room(value_states, value_states.shape[-2] + self.extra)
            end = self._filled + key_states.shape[-2]
            if end > self._room_k.shape[-2]:  # more tokens than reserved: double the room
                self._room_k = _grow(self._room_k, self._filled, 2 * end)
                self._room_v = _grow(self._room_v, self._filled, 2 * end)
            self._room_k[:, :, self._filled : end] = key_states
            self._room_v[:, :, self._filled : end] = value_states
            self._filled = end
            self.keys = self._room_k[:, :, :end]
            self.values = self._room_v[:, :, :end]
            return self.keys, self.values

        def batch_select_indices(self, indices: Tensor) -> None:
            """Keep only the rows ``indices`` (with their reserved room); ``index_select``, which
            copies a 64-row burnish-tiny cache about 5x faster than indexing."""
            if self.is_initialized:
                self._room_k = self._room_k.index_select(0, indices)
                self._room_v = self._room_v.index_select(0, indices)
                self.keys = self._room_k[:, :, : self._filled]
                self.values = self._room_v[:, :, : self._filled]

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("a ReservedLayer is for one forward decode pass")

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("a ReservedLayer is for one forward decode pass")

        def reset(self) -> None:
            raise NotImplementedError("a ReservedLayer is for one forward decode pass")

else:  # pragma: no cover - only without the cache-layer API
    ReservedLayer = None  # type: ignore[assignment,misc]


def _room(states: Tensor, length: int) -> Tensor:
    b, h, _, d = states.shape
    return states.new_empty((b, h, length, d))


def _grow(room: Tensor, filled: int, length: int) -> Tensor:
    bigger = _room(room, length)
    bigger[:, :, :filled] = room[:, :, :filled]
    return bigger


def reserved_cache(model: torch.nn.Module, extra: int):
    """A cache of `ReservedLayer` for ``model`` (room for ``extra`` tokens after the prompt), or
    None when its layers are not all plain `DynamicLayer` (the model then builds its own)."""
    if DynamicCache is None:
        return None
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        cache = DynamicCache(config=config)
    except Exception:  # a config transformers cannot read layer types from
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [ReservedLayer(extra) for _ in cache.layers]
    return cache
