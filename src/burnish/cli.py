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


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command("train")
def train_cmd(
    config: str = typer.Argument(..., help="Run configuration (TOML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: section.field=value."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
) -> None:
    """Train an adapter with RL as the config says."""
    from burnish.config import ConfigError, load_config
    from burnish.train.progress import train_with_progress

    try:
        cfg = load_config(config, set_)
        train_with_progress(cfg, resume=resume)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def demo(
    set_: list[str] = typer.Option([], "--set", help="Override a field of the demo config."),
    run_dir: str = typer.Option("runs/demo", help="Where the run is written."),
) -> None:
    """The embedded default: burnish-tiny + arithmetic + DAPO + LoRA on CPU, before/after table."""
    from burnish.config import ConfigError, loads_config
    from burnish.train.demo import DEMO_CONFIG
    from burnish.train.progress import train_with_progress

    try:
        cfg = loads_config(DEMO_CONFIG, [f"log.run_dir={run_dir!r}", *set_])
        train_with_progress(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def report(run_dir: str = typer.Argument(..., help="Run directory.")) -> None:
    """Write PNG plots and report.html for a run."""
    from burnish.report import write_report

    try:
        typer.echo(str(write_report(run_dir)))
    except FileNotFoundError as e:
        _fail(str(e))


@app.command()
def inspect(
    run_dir: str = typer.Argument(..., help="Run directory."),
    step: int | None = typer.Option(None, help="Step to show (default: the last)."),
    top: int = typer.Option(3, help="How many best and worst rollouts."),
    flagged: bool = typer.Option(False, "--flagged", help="Show the monitors' flagged samples."),
) -> None:
    """Show the best and worst rollouts of a step, or the flagged samples."""
    from burnish.inspect import inspect_run

    try:
        inspect_run(run_dir, step=step, top=top, flagged=flagged)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
