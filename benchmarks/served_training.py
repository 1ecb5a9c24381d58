"""The demo's training run sampled by a server, against the same run sampled in process.

Both runs use the demo configuration (burnish-tiny + arithmetic + DAPO + LoRA), the same seed and
1 torch thread; the served one sets ``sampler.kind = "openai"`` and samples through
``burnish serve`` (``--engine burnish``) or a real vLLM server (``--engine vllm``, its python
given by ``--vllm-python`` or ``$BURNISH_VLLM_PYTHON``), both started here on 127.0.0.1 with
runtime LoRA loading. The two runs draw different random streams (the server seeds each request
from the sampler's generator), so their curves are compared, not their samples.

Prints the mean training reward per block of 10 steps for both runs, the test pass@1 before and
after, the largest per-step sampler/trainer mismatch (k3) of the served run, and the wall time.

    python benchmarks/served_training.py --engine burnish [--steps 60]
    python benchmarks/served_training.py --engine vllm --vllm-python .venv-vllm/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "engines")]  # the server helpers

from burnish.config import load_config  # noqa: E402
from burnish.models.load import resolve_model_path  # noqa: E402
from burnish.store import RunStore  # noqa: E402
from burnish.train.demo import DEMO_CONFIG  # noqa: E402
from burnish.train.loop import train  # noqa: E402


@contextlib.contextmanager
def server(engine: str, vllm_python: str | None, log: Path):
    """Yields ``(base_url, served model name)`` of a running server."""
    if engine == "burnish":
        from served import burnish_serve

        with burnish_serve(log) as url:
            yield url, "burnish-tiny"
        return
    from vllm_server import start_vllm

    python = vllm_python or os.environ.get("BURNISH_VLLM_PYTHON")
    if not python:
        raise SystemExit("--engine vllm needs --vllm-python or $BURNISH_VLLM_PYTHON")
    model_dir = resolve_model_path("burnish-tiny")
    with start_vllm(
        model_dir, python=python, served_model_name="burnish-tiny", enable_lora=True,
        log_path=log,
    ) as srv:  # fmt: skip
        yield srv.base_url, srv.model


def run(
    config: Path, run_dir: Path, steps: int, extra: list[str]
) -> tuple[dict, list[dict], float]:
    overrides = [f"train.steps={steps}", "model.threads=1", "eval.every=0", "eval.n_tasks=100"]
    t0 = time.time()
    summary = train(load_config(config, [*overrides, f"log.run_dir={run_dir}", *extra]))
    store = RunStore.open(run_dir / "run.db")
    try:
        steps_logged = store.steps()
    finally:
        store.close()
    return summary, steps_logged, time.time() - t0


def blocks(steps: list[dict], size: int = 10) -> list[float]:
    rewards = [s["reward/mean"] for s in steps]
    return [
        sum(rewards[i : i + size]) / len(rewards[i : i + size])
        for i in range(0, len(rewards), size)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("burnish", "vllm"), default="burnish")
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="burnish-served-") as tmp:
        tmp = Path(tmp)
        config = tmp / "demo.toml"
        config.write_text(DEMO_CONFIG)
        local, local_steps, local_s = run(config, tmp / "local", args.steps, [])
        with server(args.engine, args.vllm_python, tmp / "server.log") as (url, name):
            served_extra = [
                "sampler.kind=openai",
                f"sampler.base_url={url}",
                f"sampler.model={name}",
            ]
            served, served_steps, served_s = run(config, tmp / "served", args.steps, served_extra)
    k3 = max(s.get("mismatch/k3", 0.0) for s in served_steps)
    print(f"engine: {args.engine}; {args.steps} steps of the demo configuration, 1 thread")
    print("mean training reward per 10 steps:")
    print(
        "  steps     "
        + " ".join(f"{10 * i:>3}-{10 * i + 9:<3}" for i in range(len(blocks(local_steps))))
    )
    print("  local     " + " ".join(f"{r:7.3f}" for r in blocks(local_steps)))
    print("  served    " + " ".join(f"{r:7.3f}" for r in blocks(served_steps)))
    for name, s, secs in (("local", local, local_s), ("served", served, served_s)):
        print(
            f"{name:6s}  test pass@1 {s['before']['pass@1']:.3f} -> {s['after']['pass@1']:.3f}"
            f"  ({secs:.0f} s)"
        )
    print(f"served run: largest per-step mismatch/k3 {k3:.2e}")


if __name__ == "__main__":
    main()
