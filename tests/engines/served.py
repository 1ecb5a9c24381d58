"""Start and stop `burnish serve` as a subprocess on 127.0.0.1, as a user would run it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def burnish_serve(log: Path, *args: str, threads: int = 1) -> Iterator[str]:
    """Run ``burnish serve --model burnish-tiny ARGS`` with runtime LoRA updating on; yields
    the ``/v1`` base URL and stops the server (its whole process group) on exit."""
    port = free_port()
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"}
    cmd = [sys.executable, "-m", "burnish.cli", "serve", "--model", "burnish-tiny"]
    cmd += ["--port", str(port), "--threads", str(threads), "--seed", "0", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"burnish serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError(f"burnish serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url + "/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
