"""The HTTP side of `burnish serve`: vLLM's OpenAI-compatible routes on FastAPI.

Routes: ``GET /health``, ``GET /version``, ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions``, and, only when ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` is ``1`` or
``true`` (any case) as for vLLM, ``POST /v1/load_lora_adapter`` and
``POST /v1/unload_lora_adapter`` (otherwise they do not exist: 404).

With an API key (``--api-key`` or ``VLLM_API_KEY``), every ``/v1`` route needs
``Authorization: Bearer <key>``, as with vLLM. Errors have vLLM's shape (`burnish.serve.errors`); a body that does not validate is a 400 in that
shape, with vLLM's "N validation error(s)" message, not FastAPI's 422.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections import defaultdict
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from burnish.serve.adapters import AdapterStore
from burnish.serve.chat import chat, stream_chat
from burnish.serve.completions import complete, stream_completion
from burnish.serve.engine import Engine
from burnish.serve.errors import ServeError, error_body
from burnish.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    LoadLoRAAdapterRequest,
    UnloadLoRAAdapterRequest,
    model_card,
)
from burnish.serve.state import ServerState, sampling_defaults

__all__ = ["RUNTIME_LORA_ENV", "build_state", "create_app", "runtime_lora_allowed"]

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def runtime_lora_allowed(environ: dict[str, str] | None = None) -> bool:
    """vLLM's reading of ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``: ``1`` or ``true``, any case."""
    value = (environ if environ is not None else os.environ).get(RUNTIME_LORA_ENV, "0")
    return value.strip().lower() in ("1", "true")


def build_state(
    model: Any,
    tokenizer: Any,
    *,
    model_name: str,
    served_model_name: str | None = None,
    adapters: dict[str, str] | None = None,
    max_loras: int = 8,
    max_cpu_loras: int | None = None,
    max_lora_rank: int = 16,
    max_batch_size: int = 256,
    adapter_root: str | Path | None = None,
    max_model_len: int | None = None,
    threads: int | None = None,
    allow_runtime_lora: bool | None = None,
    api_key: str | None = None,
    seed: int | None = None,
) -> ServerState:
    """Everything the server needs, with the command line's adapters loaded.

    Args:
        model: the base model (a transformers causal LM).
        tokenizer: its tokenizer.
        model_name: what ``--model`` named.
        served_model_name: the name clients use for the base model (default ``model_name``).
        adapters: adapters to serve from the start, name -> directory.
        max_loras: most distinct adapters in one batch.
        max_cpu_loras: most adapters loaded at once (default ``max_loras``).
        max_lora_rank: largest LoRA rank accepted.
        max_batch_size: most rows decoded together.
        adapter_root: directory runtime-loaded adapters must be inside.
        max_model_len: context length (default the model's ``max_position_embeddings``).
        threads: torch threads of the engine's worker thread.
        allow_runtime_lora: serve the load/unload routes (default: `runtime_lora_allowed`).
        api_key: the key every ``/v1`` request must carry (none: no authentication).
        seed: seed of the generator that seeds requests without a seed.

    Raises:
        ServeError: a command-line adapter is missing or not loadable.
        ValueError: inconsistent limits.
    """
    positions = getattr(model.config, "max_position_embeddings", None)
    length = max_model_len or positions or 2048
    if positions is not None and length > positions:
        raise ValueError(f"max_model_len {length} exceeds the model's {positions} positions")
    store = AdapterStore(
        model,
        max_cpu_loras=max_cpu_loras or max_loras,
        max_lora_rank=max_lora_rank,
        adapter_root=adapter_root,
    )
    for name, path in (adapters or {}).items():
        spec = store.check(name, path, runtime=False)
        store.load(spec)
        store.registered[name] = spec
    engine = Engine(
        tokenizer, store, max_loras=max_loras, max_batch_size=max_batch_size, threads=threads,
        max_model_len=length, seed=seed,
    )  # fmt: skip
    if allow_runtime_lora is None:
        allow_runtime_lora = runtime_lora_allowed()
    return ServerState(
        engine=engine,
        base_name=served_model_name or model_name,
        model_root=model_name,
        max_model_len=length,
        allow_runtime_lora=allow_runtime_lora,
        api_key=api_key or None,
        defaults=sampling_defaults(model),
    )


def create_app(state: ServerState) -> FastAPI:
    """The FastAPI application serving ``state`` (see the module docstring for the routes)."""
    app = FastAPI(title="burnish serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.burnish = state
    _error_handlers(app)
    if state.api_key:
        _require_key(app, state.api_key)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/version")
    async def version() -> dict[str, str]:
        from burnish import __version__

        return {"version": __version__}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        cards = [
            model_card(state.base_name, state.model_root, None, state.max_model_len, state.created)
        ]
        for spec in state.engine.store.registered.values():
            cards.append(model_card(spec.name, spec.path, state.base_name, None, state.created))
        return {"object": "list", "data": cards}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Response:
        if body.stream:
            events = await stream_completion(state, body)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(await complete(state, body))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        if body.stream:
            return StreamingResponse(await stream_chat(state, body), media_type="text/event-stream")
        return JSONResponse(await chat(state, body))

    if state.allow_runtime_lora:
        _lora_routes(app, state)
    return app


def _lora_routes(app: FastAPI, state: ServerState) -> None:
    """``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``, with vLLM's checks and
    messages; one load or unload at a time per name."""
    store, engine = state.engine.store, state.engine
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def invalid(message: str) -> ServeError:
        return ServeError(message, HTTPStatus.BAD_REQUEST, "InvalidUserInput")

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> Response:
        name = body.lora_name
        async with locks[name]:
            if not name or not body.lora_path:
                raise invalid("Both 'lora_name' and 'lora_path' must be provided.")
            if name == state.base_name:
                raise invalid(f"The lora adapter '{name}' conflicts with a served base model.")
            if not body.load_inplace and name in store.registered:
                raise invalid(
                    f"The lora adapter '{name}' has already been loaded. If you want to load "
                    "the adapter in place, set 'load_inplace' to True."
                )
            spec = store.check(name, body.lora_path, runtime=True)
            await engine.call(store.load, spec)
            store.registered[name] = spec
        return Response(f"Success: LoRA adapter '{name}' added successfully.", status_code=200)

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> Response:
        name = body.lora_name
        async with locks[name]:
            if not name:
                raise invalid("'lora_name' needs to be provided to unload a LoRA adapter.")
            if name not in store.registered:
                raise ServeError(
                    f"The lora adapter '{name}' cannot be found.",
                    HTTPStatus.NOT_FOUND,
                    "NotFoundError",
                )
            del store.registered[name]
            await engine.call(store.drop, name)
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", status_code=200)


def _require_key(app: FastAPI, key: str) -> None:
    """vLLM's ``--api-key``: ``/v1`` routes answer 401 ``{"error": "Unauthorized"}`` unless the
    request carries ``Authorization: Bearer <key>`` (``/health`` and ``/version`` stay open)."""
    expected = hashlib.sha256(key.encode()).digest()

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.method != "OPTIONS" and request.url.path.startswith("/v1"):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = hashlib.sha256(token.encode()).digest()
            if scheme.lower() != "bearer" or not secrets.compare_digest(given, expected):
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return await call_next(request)


def _error_handlers(app: FastAPI) -> None:
    """vLLM's error shape for our errors, invalid bodies (400, not 422) and crashes (500)."""

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        label = "error" if len(errors) == 1 else "errors"
        lines = [f"{len(errors)} validation {label}:"]
        for err in errors[:10]:
            shown = {"type": err.get("type"), "loc": _param(err), "msg": err.get("msg")}
            lines.append(f"  {shown}")
        param = _param(errors[0]) if errors else None
        body = error_body("\n".join(lines), HTTPStatus.BAD_REQUEST.phrase, 400, param)
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(str(exc), "InternalServerError", 500), status_code=500)


_TYPE_MARKERS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "union"})


def _param(error: dict) -> str:
    """A validation error's location as vLLM names the parameter: ``body.prompt``, without
    pydantic's union-branch markers (``list[int]``, ``str``, ...)."""
    parts = [
        str(p)
        for p in error.get("loc", ())
        if not re.search(r"[\[\]{}()]", str(p)) and str(p).lower() not in _TYPE_MARKERS
    ]
    return ".".join(parts)
