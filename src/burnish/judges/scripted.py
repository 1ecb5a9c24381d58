"""The scripted judge server: an OpenAI-compatible HTTP endpoint whose "model" follows rules.

This is a stand-in for offline work, tests and CI. It grades nothing: it answers burnish's
judge prompts by the keyword / length / injection rules of `burnish.judges.scripted_rules`,
and plants failures on demand (HTTP 429, malformed JSON, out-of-range scores, missing criteria,
slow answers). Its model id is "scripted-judge" so that it can never be mistaken for a real
judge in logs or caches.

    burnish judge scripted --rules examples/judges/rules_keywords.toml --port 8123

In tests, `scripted_judge_server(rules)` starts it in a thread on a free 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from burnish.judges.scripted_rules import MODEL_ID, ScriptedRules, answer


class ScriptedState:
    """Rules, request counter and fault generator of one server (thread-safe)."""

    def __init__(self, rules: ScriptedRules) -> None:
        self._lock = threading.Lock()
        self.reconfigure(rules)

    def reconfigure(self, rules: ScriptedRules) -> None:
        """Swap the rules and reset the counter and the fault generator."""
        with self._lock:
            self.rules = rules
            self.calls = 0
            self._rng = random.Random(rules.seed)

    def next_fault(self) -> tuple[ScriptedRules, Any]:
        """Count a request and pick the fault that applies to it (or None)."""
        with self._lock:
            index = self.calls
            self.calls += 1
            for f in self.rules.faults:
                if index < f.first_n or (f.probability > 0 and self._rng.random() < f.probability):
                    return self.rules, f
            return self.rules, None


def create_app(state: ScriptedState) -> FastAPI:
    """The FastAPI app: POST /v1/chat/completions, GET /v1/models."""
    app = FastAPI(title="burnish scripted judge (stand-in for tests and CI)")

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "owned_by": "burnish"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        rules, fault = state.next_fault()
        kind = fault.kind if fault is not None else None
        if kind in ("http_429", "http_500"):
            status = 429 if kind == "http_429" else 500
            return JSONResponse(
                {"error": {"message": f"scripted {kind}", "type": kind, "code": status}},
                status_code=status,
                headers={"retry-after": "0"},
            )
        if kind == "slow":
            await asyncio.sleep(fault.seconds)
        messages = body.get("messages", [])
        text = answer(rules, messages, kind)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": max(1, len(text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": f"scripted-{state.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }

    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ScriptedJudgeServer:
    """Handle on a running scripted judge: its URL, request count and rules."""

    def __init__(self, state: ScriptedState, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def calls(self) -> int:
        """Chat requests received since start or the last `reconfigure`."""
        return self.state.calls

    def reconfigure(self, rules: ScriptedRules) -> None:
        self.state.reconfigure(rules)


@contextmanager
def scripted_judge_server(
    rules: ScriptedRules | None = None, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[ScriptedJudgeServer]:
    """Run the scripted judge with uvicorn in a background thread; stop it on exit."""
    import uvicorn

    state = ScriptedState(rules or ScriptedRules())
    port = port or free_port(host)
    config = uvicorn.Config(
        create_app(state), host=host, port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="scripted-judge", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"scripted judge did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield ScriptedJudgeServer(state, host, port)
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def serve(rules: ScriptedRules, host: str = "127.0.0.1", port: int = 8123) -> None:
    """Run the scripted judge in the foreground (the `burnish judge scripted` command)."""
    import uvicorn

    uvicorn.run(create_app(ScriptedState(rules)), host=host, port=port, log_level="info")
