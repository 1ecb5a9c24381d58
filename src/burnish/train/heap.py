"""Keeps CPython's full garbage collections, and the kernel's page faults, out of the training
steps.

A run's start-up leaves about half a million long-lived objects behind (torch, transformers,
the tokenizer, the model's modules). CPython collects its oldest generation whenever the objects
that survived younger collections reach a quarter of it, and each such full collection walks
all of them: about 0.3 s on a 2-core machine, paid inside whatever step it lands in (one step
in forty of `benchmarks/vs_trl.py --size tiny`, a tenth of its mean step time). `gc.freeze`
moves the objects alive after start-up into a permanent generation that collections skip, so a
full collection walks only what the run has made since.

glibc's malloc hands blocks above its mmap threshold (128 KiB, rising to at most 32 MiB) to the
kernel and back on every allocation, and trims the heap's free top: each such block is fresh
memory that the kernel faults in page by page and zeroes. At a large vocabulary the LM head's
logits are hundreds of MB per call, so a step of `benchmarks/profile_step.py --size 100m` spent
about a third of its time there (9.4 million page faults in a run). `freed_memory_kept` keeps
freed memory in the process heap while the steps run, so later blocks reuse it.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager

# glibc's mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_kept_depth = 0


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


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (whose malloc `freed_memory_kept` tunes)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None  # another C library (musl, macOS): left as it is
    return libc


@contextmanager
def freed_memory_kept(enabled: bool = True) -> Iterator[bool]:
    """Keep the memory torch frees in the process heap until the block ends; yields whether it
    does (false: not enabled, or not glibc).

    Inside the block glibc serves every block from its heap (no mmap) and never trims the heap
    below its high-water mark, so the kernel does not fault in and zero fresh pages for each
    large tensor. The process keeps its peak memory until the block ends; then glibc's default
    values come back and the free memory is returned to the kernel (``malloc_trim``). glibc has
    no getter for these settings, so values set through ``MALLOC_MMAP_MAX_`` or
    ``MALLOC_TRIM_THRESHOLD_`` are not restored, and after any ``mallopt`` glibc stops raising its
    mmap threshold by itself. Nested blocks leave it to the outermost.
    ``model.keep_freed_memory`` turns it off.
    """
    global _kept_depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    if _kept_depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # the largest a C int holds
    _kept_depth += 1
    try:
        yield True
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)


@contextmanager
def steps_heap(keep_freed_memory: bool = True) -> Iterator[None]:
    """The heap a run's training steps run on: start-up frozen (`start_up_frozen`) and, with
    ``model.keep_freed_memory``, freed memory kept (`freed_memory_kept`)."""
    with start_up_frozen(), freed_memory_kept(keep_freed_memory):
        yield
