"""``burnish serve``: the command that loads a model and its adapters and runs the server."""

from __future__ import annotations

import typer

__all__ = ["serve_command"]


def _adapters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"expected NAME=PATH, got {pair!r}", param_hint="--adapter")
        if name in out:
            raise typer.BadParameter(f"adapter name {name!r} given twice", param_hint="--adapter")
        out[name] = path
    return out


def serve_command(
    model: str = typer.Option(..., "--model", help="Model: hub id, local path or burnish-tiny."),
    adapter: list[str] = typer.Option(
        [], "--adapter", metavar="NAME=PATH", help="Serve a LoRA adapter under NAME (repeatable)."
    ),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Name of the base model in requests (default --model)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_loras: int = typer.Option(8, "--max-loras", help="Most distinct adapters in one batch."),
    max_cpu_loras: int | None = typer.Option(
        None, "--max-cpu-loras", help="Most adapters loaded at once; LRU eviction past it."
    ),
    max_lora_rank: int = typer.Option(16, "--max-lora-rank", help="Largest LoRA rank accepted."),
    adapter_root: str | None = typer.Option(
        None, "--adapter-root", metavar="DIR", help="Runtime-loaded adapters must lie inside DIR."
    ),
    max_model_len: int | None = typer.Option(
        None, "--max-model-len", help="Context length (default: the model's positions)."
    ),
    max_batch_size: int = typer.Option(256, "--max-batch-size", help="Most rows decoded at once."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="VLLM_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1 routes (or set VLLM_API_KEY).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of requests without a seed."),
) -> None:
    """Serve a model and LoRA adapters with vLLM's OpenAI-compatible API."""
    import uvicorn
    from transformers.utils import logging as hf_logging

    from burnish.models.load import load_model
    from burnish.models.threads import set_threads
    from burnish.serve.app import build_state, create_app
    from burnish.serve.errors import ServeError

    hf_logging.disable_progress_bar()
    threads = set_threads(threads)
    try:
        base, tokenizer = load_model(model, dtype=dtype, device=device)
        state = build_state(
            base, tokenizer, model_name=model, served_model_name=served_model_name,
            adapters=_adapters(adapter), max_loras=max_loras, max_cpu_loras=max_cpu_loras,
            max_lora_rank=max_lora_rank, max_batch_size=max_batch_size,
            adapter_root=adapter_root, max_model_len=max_model_len, threads=threads,
            api_key=api_key, seed=seed,
        )  # fmt: skip
    except (ServeError, ValueError, FileNotFoundError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from e
    runtime = "on" if state.allow_runtime_lora else "off"
    auth = "an API key" if state.api_key else "no authentication"
    typer.echo(
        f"burnish serve: {state.base_name} with {len(state.engine.store.registered)} adapter(s) "
        f"on http://{host}:{port}/v1 (runtime LoRA updating {runtime}, {auth})",
        err=True,
    )
    try:
        uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
    finally:
        state.engine.close()
