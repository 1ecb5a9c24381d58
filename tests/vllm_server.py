"""Start and stop a real vLLM OpenAI-compatible server on 127.0.0.1 (tests and benchmarks).

vLLM is not a dependency of the test environment: it usually lives in a virtual environment of
its own (its torch pins differ from burnish's), so the server runs as a subprocess of that
environment's python::

    from vllm_server import start_vllm

    with start_vllm("src/burnish/models/burnish_tiny", python=".venv-vllm/bin/python") as server:
        sampler = OpenAISampler(server.base_url, server.model)
        ...

The server is started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve``
console script of some CPU wheels fails on the package name) with ``--enforce-eager`` and
``--dtype float32`` by default (the CPU backend's settings; `benchmarks/gpu.py` passes others),
in a process group of its own; `VLLMServer.stop` ends that group (SIGTERM, then SIGKILL after a
grace period), so no engine worker outlives it. Its output goes to a log
file whose tail is quoted if it fails to come up.

`vllm_python()` finds the interpreter: the ``BURNISH_VLLM_PYTHON`` environment variable, else
None (callers skip).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "VLLM_PYTHON_ENV",
    "VLLMServer",
    "VLLMStartError",
    "free_port",
    "start_vllm",
    "vllm_python",
]

VLLM_PYTHON_ENV = "BURNISH_VLLM_PYTHON"
"""Environment variable naming the python of an environment with vLLM installed."""

HOST = "127.0.0.1"


class VLLMStartError(RuntimeError):
    """The vLLM server exited or did not answer in time (the message quotes its log)."""


def vllm_python() -> str | None:
    """The python with vLLM installed, from ``$BURNISH_VLLM_PYTHON`` (None when unset)."""
    value = os.environ.get(VLLM_PYTHON_ENV)
    return value or None


def require_vllm_python() -> str:
    """`vllm_python()` for a test of the real-vLLM tier: skips the test without one, and fails
    it instead when ``$BURNISH_REQUIRE_VLLM`` is set (CI)."""
    import pytest

    python = vllm_python()
    if python is None:
        if os.environ.get("BURNISH_REQUIRE_VLLM"):
            pytest.fail("BURNISH_REQUIRE_VLLM is set but BURNISH_VLLM_PYTHON is not")
        pytest.skip("the real-vLLM tier needs $BURNISH_VLLM_PYTHON (bash .ci/vllm_env.sh)")
    return python


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class VLLMServer:
    """A running vLLM server: where to reach it and how to stop it."""

    process: subprocess.Popen
    base_url: str
    """Server root including ``/v1`` (what `OpenAISampler` takes)."""
    model: str
    """The name the base model is served under."""
    log_path: Path
    command: list[str] = field(default_factory=list)

    def log_tail(self, chars: int = 4000) -> str:
        """The last `chars` characters of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 20.0) -> None:
        """End the server's process group: SIGTERM, then SIGKILL after `grace_s` seconds."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the server leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)
        # Workers of the group that outlived the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_vllm(
    model_dir: str | Path,
    *,
    python: str | Path,
    port: int | None = None,
    served_model_name: str = "base",
    enable_lora: bool = False,
    max_lora_rank: int = 16,
    runtime_lora_updating: bool = True,
    dtype: str = "float32",
    enforce_eager: bool = True,
    kv_cache_bytes: int | None = 1 << 30,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout_s: float = 300.0,
    log_path: str | Path | None = None,
) -> VLLMServer:
    """Start a vLLM OpenAI-compatible server on 127.0.0.1 and wait until it answers.

    Args:
        model_dir: the model directory (config, weights, tokenizer).
        python: the interpreter of an environment with vLLM installed.
        port: the port; default a free one.
        served_model_name: the name requests use for the base model.
        enable_lora: start with ``--enable-lora --max-lora-rank max_lora_rank``.
        runtime_lora_updating: set ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (so adapters can be
            loaded with ``POST /v1/load_lora_adapter``); only with `enable_lora`.
        dtype: ``--dtype`` of the served weights (float32 on a CPU; bfloat16 on a GPU).
        enforce_eager: pass ``--enforce-eager`` (no CUDA graphs or compilation: the CPU
            backend's mode, and the fastest start); False lets a GPU server capture graphs.
        kv_cache_bytes: ``--kv-cache-memory-bytes`` (default 1 GiB; None: vLLM's own choice).
            Without an explicit size vLLM's CPU worker reserves ``--gpu-memory-utilization``
            (0.92) of the memory node's total and refuses to start when that much is not free,
            which on a shared machine it rarely is.
        extra_args: more command-line arguments for the server.
        env: more environment variables for the server.
        timeout_s: how long to wait for ``GET /v1/models`` to answer.
        log_path: where the server's output goes; default a temporary file.

    Returns:
        The running `VLLMServer` (a context manager that stops it).

    Raises:
        VLLMStartError: the server exited, or did not answer within `timeout_s` (it is stopped).
    """
    port = port or free_port()
    command = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--dtype",
        dtype,
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    if enforce_eager:
        command.append("--enforce-eager")
    if enable_lora:
        command += ["--enable-lora", "--max-lora-rank", str(max_lora_rank)]
    if kv_cache_bytes is not None:
        command += ["--kv-cache-memory-bytes", str(kv_cache_bytes)]
    command += list(extra_args)
    server_env = {**os.environ, **(env or {})}
    if enable_lora and runtime_lora_updating:
        server_env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="burnish-vllm-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env,
            start_new_session=True,
        )
    server = VLLMServer(process, f"http://{HOST}:{port}/v1", served_model_name, log_path, command)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if not server.alive():
                raise VLLMStartError(
                    f"vLLM exited with code {process.returncode} before answering "
                    f"(command: {' '.join(command)}); the end of its log {log_path}:\n"
                    f"{server.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.base_url + "/models", timeout=5.0).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                raise VLLMStartError(
                    f"vLLM did not answer within {timeout_s:.0f} s (command: "
                    f"{' '.join(command)}); the end of its log {log_path}:\n{server.log_tail()}"
                )
            time.sleep(1.0)
    except BaseException:
        server.stop()
        raise
