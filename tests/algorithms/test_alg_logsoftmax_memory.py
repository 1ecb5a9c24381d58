"""The chunked selective log-softmax needs less peak memory than the naive one (fresh processes)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "logsoftmax_memory.py"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.access("/proc/self/clear_refs", os.W_OK),
    reason="peak-RSS reset needs Linux /proc/self/clear_refs",
)


def _bench():
    spec = importlib.util.spec_from_file_location("logsoftmax_memory", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chunked_lowers_peak_memory():
    bench = _bench()
    shape = {"batch": 2, "seq": 256, "vocab": 32768, "dtype": "float32", "chunk_size": 128}
    both = bench.measure("naive,chunked", **shape)
    naive, chunked = both["naive"], both["chunked"]
    copy_mib = naive["float32_copy_mib"]  # 64 MiB
    # naive keeps a float32 copy for backward plus the gradient buffers: >= 2 copies
    assert naive["peak_extra_mib"] >= 2 * copy_mib
    # chunked: the gradient (one copy) plus float32 scratch of a few chunks, well under naive
    assert chunked["peak_extra_mib"] < 1.5 * copy_mib
    assert chunked["peak_extra_mib"] < 0.75 * naive["peak_extra_mib"]
