"""Keeps CPython's full garbage collections out of the training steps.

A run's start-up leaves about half a million long-lived objects behind (torch, transformers,
the tokenizer, the model's modules). CPython collects its oldest generation whenever the objects
that survived younger collections reach a quarter of it, and each such full collection walks
all of them: about 0.3 s on a 2-core machine, paid inside whatever step it lands in (one step
in forty of `benchmarks/vs_trl.py --size tiny`, a tenth of its mean step time). `gc.freeze`
moves the objects alive after start-up into a permanent generation that collections skip, so a
full collection walks only what the run has made since.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def start_up_frozen() -> Iterator[None]:
    """Freeze every object alive now (after a collection of the young generations) until the
    block ends.

    The old generation is not collected first: a full collection costs what this saves, and
    start-up leaves next to no garbage there (tens of objects). Frozen objects that become
    garbage inside the block are collected after it. A heap someone else froze stays frozen.
    """
    if gc.get_freeze_count():  # someone else froze it (a server, an outer run): leave it be
        yield
        return
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
