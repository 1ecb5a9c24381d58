"""The `burnish` command line. Each command parses its arguments and calls one function."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="burnish",
    help="RL fine-tuning of language models: GRPO-family algorithms, LoRA, judges, monitors.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """burnish: RL fine-tuning of language models."""


@app.command()
def version() -> None:
    """Print the burnish version."""
    from burnish import __version__

    typer.echo(__version__)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
