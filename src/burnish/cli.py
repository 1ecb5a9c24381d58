"""The `burnish` command line. Each command parses its arguments and calls one function."""

from __future__ import annotations

from pathlib import Path

import typer

from burnish import interrupts
from burnish.serve.cli import serve_command

app = typer.Typer(
    name="burnish",
    help="RL fine-tuning of language models: GRPO-family algorithms, LoRA, judges, monitors.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: `--resume`, `--set FIELD=VALUE`, like a standard CLI
)
_SET_HELP = "Override a config field: section.field=value (repeatable)."


@app.callback()
def _root() -> None:
    """burnish: RL fine-tuning of language models."""
    interrupts.install()  # before the heavy imports: an interrupt there must not get lost


@app.command()
def version() -> None:
    """Print the burnish version."""
    from burnish import __version__

    typer.echo(__version__)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _fresh_dir(base: str) -> str:
    """`base`, or `base-2`, `base-3` ... : the first that does not exist yet."""
    path, n = Path(base), 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return str(path)


@app.command("train")
def train_cmd(
    config: str = typer.Argument(..., metavar="CONFIG", help="Run configuration (TOML)."),
    set_: list[str] = typer.Option([], "--set", metavar="FIELD=VALUE", help=_SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
) -> None:
    """Train an adapter with RL as the config says."""
    with interrupts.reported() as where:  # an interrupt waits for the start-up to end
        from burnish.config import ConfigError, load_config

        try:
            cfg = load_config(config, set_)
        except (ConfigError, ValueError, FileNotFoundError) as e:
            _fail(str(e))
        overrides = "".join(f" --set {s!r}" for s in set_)
        where.at(cfg.log.run_dir, f"burnish train {config}{overrides} --resume")
        from burnish.train.guards import RunHealthError
        from burnish.train.progress import train_with_progress  # torch, transformers

        try:
            train_with_progress(cfg, resume=resume)
        except (ConfigError, ValueError, FileNotFoundError, RunHealthError) as e:
            _fail(str(e))


@app.command()
def demo(
    set_: list[str] = typer.Option([], "--set", metavar="FIELD=VALUE", help=_SET_HELP),
    run_dir: str | None = typer.Option(
        None,
        metavar="DIR",
        help="Where the run is written (default: runs/demo, or runs/demo-2, -3 ... if taken).",
    ),
) -> None:
    """The embedded default: burnish-tiny + arithmetic + DAPO + LoRA on CPU, before/after table."""
    with interrupts.reported() as where:  # an interrupt waits for the start-up to end
        from burnish.config import ConfigError, loads_config
        from burnish.train.demo import DEMO_CONFIG

        try:
            run_dir = run_dir or _fresh_dir("runs/demo")
            cfg = loads_config(DEMO_CONFIG, [f"log.run_dir={run_dir!r}", *set_])
        except (ConfigError, ValueError, FileNotFoundError) as e:
            _fail(str(e))
        where.at(run_dir, f"burnish train {Path(run_dir) / 'config.toml'} --resume")
        from burnish.train.progress import train_with_progress  # torch, transformers

        try:
            train_with_progress(cfg)
        except (ConfigError, ValueError, FileNotFoundError) as e:
            _fail(str(e))


@app.command()
def report(run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="Run directory.")) -> None:
    """Write report.html for a run: one self-contained page (plots, alerts, rollouts)."""
    from burnish.report import write_report

    try:
        typer.echo(str(write_report(run_dir)))
    except FileNotFoundError as e:
        _fail(str(e))


@app.command()
def inspect(
    run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="Run directory."),
    step: int | None = typer.Option(None, metavar="N", help="Step to show (default: the last)."),
    top: int = typer.Option(3, metavar="N", help="How many best and worst distinct rollouts."),
    flagged: bool = typer.Option(
        False, "--flagged", help="Only rollouts a monitor flagged, with the signal behind each."
    ),
    top_reward: bool = typer.Option(
        False, "--top-reward", help="The top-reward samples the monitor keeps every step."
    ),
) -> None:
    """Read rollouts: best and worst of a step (default), --flagged, or --top-reward."""
    from burnish.inspect_run import inspect_run

    try:
        inspect_run(run_dir, step=step, top=top, flagged=flagged, top_reward=top_reward)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))


judge_app = typer.Typer(help="LLM judges: calibrate, replay, scripted stand-in server.")
app.add_typer(judge_app, name="judge")

_JUDGE_BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible judge API root.")
_JUDGE_MODEL = typer.Option(None, "--model", help="Judge model id.")
_JUDGE_KEY_ENV = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Env var with the key.")
_JUDGE_SCRIPTED = typer.Option(
    None, "--scripted", help="Use the scripted stand-in judge with this rules TOML (offline)."
)


@judge_app.command("calibrate")
def judge_calibrate(
    rubric: Path = typer.Argument(..., metavar="RUBRIC", help="Rubric TOML."),
    labels: Path = typer.Argument(..., metavar="LABELS", help="Labelled examples (JSONL)."),
    base_url: str | None = _JUDGE_BASE_URL,
    model: str | None = _JUDGE_MODEL,
    api_key_env: str = _JUDGE_KEY_ENV,
    scripted: Path | None = _JUDGE_SCRIPTED,
    seed: int = typer.Option(0, help="Seed of criterion order and group shuffles."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Agreement with labels (accuracy, kappa, Spearman), position flips, canary false positives."""
    from burnish.judges.commands import run_calibrate

    _with_judge(
        lambda cfg: run_calibrate(rubric, labels, cfg, as_json=as_json, seed=seed),
        scripted=scripted,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
    )


@judge_app.command("replay")
def judge_replay(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run directory."),
    rubric: Path = typer.Option(..., "--rubric", help="Rubric TOML to re-score with."),
    base_url: str | None = _JUDGE_BASE_URL,
    model: str | None = _JUDGE_MODEL,
    api_key_env: str = _JUDGE_KEY_ENV,
    scripted: Path | None = _JUDGE_SCRIPTED,
    top: int = typer.Option(10, help="How many top movers to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Re-score a run's stored rollouts with another rubric or judge; show what moves most."""
    from burnish.judges.commands import run_replay

    _with_judge(
        lambda cfg: run_replay(run_dir, rubric, cfg, as_json=as_json, top=top),
        scripted=scripted,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
    )


def _with_judge(command, **endpoint) -> None:
    """Run `command(judge_config)` against the endpoint the options name; errors exit cleanly."""
    from burnish.judges.commands import judge_endpoint
    from burnish.judges.rubric import RubricError

    try:
        with judge_endpoint(**endpoint) as cfg:
            command(cfg)
    except (RubricError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


@judge_app.command("scripted")
def judge_scripted(
    rules: Path = typer.Option(..., "--rules", help="Scripted-judge rules TOML."),
    port: int = typer.Option(8123, "--port", metavar="PORT", help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="HOST",
        help="Address to bind (127.0.0.1: this machine only).",
    ),
) -> None:
    """Serve the scripted stand-in judge (for offline work, tests and CI; not a real judge)."""
    from burnish.judges.scripted import serve
    from burnish.judges.scripted_rules import load_rules

    try:
        serve(load_rules(rules), host=host, port=port)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))


envs_app = typer.Typer(help="Environments: list them, validate their gold answers.")
app.add_typer(envs_app, name="envs")


@envs_app.command("list")
def envs_list(
    tasks: str | None = typer.Option(None, "--tasks", metavar="PROVIDER", help="List its tasks."),
) -> None:
    """List the environments: built-ins, installed plugins and the PROVIDER/TASK providers."""
    from burnish.envs.commands import envs_list_text, provider_tasks_text
    from burnish.envs.registry import UnknownEnvironmentError

    try:
        typer.echo(provider_tasks_text(tasks) if tasks else envs_list_text())
    except UnknownEnvironmentError as e:
        _fail(str(e))


@envs_app.command("validate")
def envs_validate(
    name: str = typer.Argument(..., metavar="NAME", help="Environment, module:attr or provider."),
    n: int = typer.Option(200, "--n", help="Tasks checked per split."),
    seed: int = typer.Option(0, help="Seed of the task streams."),
) -> None:
    """Check that the gold answer of n train and n test tasks earns the maximum reward."""
    from burnish.envs.commands import validate_command
    from burnish.envs.registry import UnknownEnvironmentError

    try:
        text, ok = validate_command(name, n=n, seed=seed)
    except (UnknownEnvironmentError, ValueError, TypeError) as e:
        _fail(str(e))
    typer.echo(text, err=not ok)
    if not ok:
        raise typer.Exit(code=1)


init_app = typer.Typer(help="Start something new from a template.", rich_markup_mode=None)
app.add_typer(init_app, name="init")


@init_app.command("env")
def init_env(
    name: str = typer.Argument(..., metavar="NAME", help="Environment name, e.g. letter-count."),
    parent: str = typer.Option(".", "--dir", metavar="DIR", help="Where NAME/ is created."),
) -> None:
    """Scaffold an environment package: environment, entry point, test, config, README."""
    from burnish.envs.scaffold import names_for, scaffold_env

    try:
        files = scaffold_env(name, parent)
        pkg, cls = names_for(name)
    except ValueError as e:
        _fail(str(e))
    root = Path(parent) / name
    typer.echo(f"wrote {root}/: " + ", ".join(str(f.relative_to(root)) for f in files))
    typer.echo(
        f"next, in {root}:\n  burnish envs validate {pkg}.env:{cls}\n"
        "  python -m pytest -q tests\n  burnish train train.toml"
    )


@app.command("eval")
def eval_cmd(
    env: str = typer.Option(..., "--env", help="Environment name."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model: hub id, local path or burnish-tiny (with --base-url: "
        "where the tokenizer comes from; default the served model's name).",
    ),
    adapter: str | None = typer.Option(
        None,
        "--adapter",
        help="Saved LoRA adapter directory (with --base-url: a served adapter's name).",
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="Evaluate a model served behind an OpenAI-compatible API "
        "(vLLM, burnish serve), e.g. http://127.0.0.1:8000/v1.",
    ),
    served_model: str | None = typer.Option(
        None, "--served-model", help="The served base model's name (with --base-url)."
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Environment variable holding the server's API key."
    ),
    samples: int = typer.Option(8, "--samples", help="Samples per task (K of pass@K)."),
    n: int = typer.Option(100, "--n", help="Tasks to evaluate."),
    split: str = typer.Option("test", help="Task split."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (0 = greedy)."),
    max_new_tokens: int = typer.Option(64, help="Tokens per assistant turn."),
    seed: int = typer.Option(0, help="Seed of tasks and sampling."),
    threads: int | None = typer.Option(None, help="Torch CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON object."),
) -> None:
    """Evaluate a model or adapter on an environment: pass@1, pass@K, reward, turns, tokens."""
    import json

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of the output
    from burnish.envs.registry import UnknownEnvironmentError
    from burnish.eval.evaluate import evaluate_model, evaluate_served, format_table
    from burnish.rollout.openai_sampler import SamplerError

    common = dict(
        samples=samples, n_tasks=n, split=split, temperature=temperature,
        max_new_tokens=max_new_tokens, seed=seed,
    )  # fmt: skip
    try:
        if base_url is not None:
            if not served_model:
                raise ValueError("--base-url needs --served-model, the served base model's name")
            result = evaluate_served(
                base_url, served_model, env, tokenizer_from=model, adapter=adapter,
                api_key_env=api_key_env, **common,
            )  # fmt: skip
        elif model is None:
            raise ValueError("give --model (a local evaluation) or --base-url and --served-model")
        else:
            result = evaluate_model(model, env, adapter_dir=adapter, threads=threads, **common)
    except (UnknownEnvironmentError, ValueError, FileNotFoundError, SamplerError) as e:
        _fail(str(e))
    typer.echo(format_table(result))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


@app.command("sft")
def sft_cmd(
    config: str = typer.Argument(..., help="Run configuration (TOML) with an [sft] section."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: section.field=value."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
) -> None:
    """Supervised fine-tuning (LoRA or full) on chat transcripts, loss on assistant tokens."""
    from burnish.config import ConfigError, load_config
    from burnish.train.sft import sft

    try:
        summary = sft(load_config(config, set_), resume=resume)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    _before_after(summary)


@app.command("distill")
def distill_cmd(
    config: str = typer.Argument(..., help="Run configuration (TOML) with a [teacher] section."),
    set_: list[str] = typer.Option([], "--set", help="Override a field: section.field=value."),
) -> None:
    """A teacher samples k answers per task, a verifier/judge filters them, SFT on the rest."""
    from burnish.config import ConfigError, load_config
    from burnish.train.distill import distill

    try:
        summary = distill(load_config(config, set_))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    _before_after(summary)


def _before_after(summary: dict) -> None:
    b, a = summary["before"], summary["after"]
    typer.echo(
        f"{summary['method']}: pass@1 {b['pass@1']:.3f} -> {a['pass@1']:.3f}; "
        f"run directory: {summary['run_dir']}"
    )


@app.command("compare")
def compare_cmd(
    run_dirs: list[str] = typer.Argument(..., help="Run directories (rl, sft, distill, opd)."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON object."),
    out: str | None = typer.Option(None, "--out", help="Write the plots into this directory."),
) -> None:
    """Forgetting across runs: new task and retention before -> after, KL to base, compute,
    matched-gain table and the forgetting-vs-KL R²."""
    import json

    from burnish.compare import compare, compare_text, contract, load_curve, write_plots

    try:
        curves = [load_curve(d) for d in run_dirs]
        result = compare(curves)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e))
    typer.echo(compare_text(result))
    if out is not None:
        for path in write_plots(curves, result, out):
            typer.echo(str(path))
    if as_json:
        typer.echo(json.dumps(contract(result)))


tiny_app = typer.Typer(help="The shipped burnish-tiny model: its pretraining recipe.")
app.add_typer(tiny_app, name="tiny")


@tiny_app.command("pretrain")
def tiny_pretrain(
    out: str = typer.Option(..., "--out", help="Directory the model is written to."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the initialisation and the data (0: the shipped model)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default: recipe)."),
    log_every: int = typer.Option(50, help="Print the loss every this many steps (0: never)."),
) -> None:
    """Pretrain burnish-tiny from scratch on noisy-teacher transcripts of the built-ins."""
    from burnish.models.pretrain import pretrain

    try:
        result = pretrain(out, seed=seed, steps=steps, log_every=log_every)
    except ValueError as e:
        _fail(str(e))
    typer.echo(
        f"wrote {result.out_dir} ({result.num_parameters:,} parameters, "
        f"{result.wall_s:.0f} s, final loss {result.final_loss:.4f})"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


@app.command("doctor")
def doctor_cmd(
    model: str = typer.Option(..., "--model", help="Hub id, model directory or burnish-tiny."),
    env: list[str] = typer.Option(
        [],
        "--env",
        help="Environment to check (repeatable; default: arithmetic, guess-number, calculator).",
    ),
    as_json: bool = typer.Option(False, "--json", help="End with the report as one JSON line."),
    chat_template_kwargs: str = typer.Option(
        "{}",
        "--chat-template-kwargs",
        help="Template variables as JSON, e.g. '{\"enable_thinking\": false}'.",
    ),
    reasoning: str = typer.Option("auto", help="Reasoning parser: auto, none, think."),
    tool_format: str = typer.Option(
        "auto", help="Tool-call format: auto, hermes, llama3_json, mistral, compact."
    ),
) -> None:
    """Check a model's chat format with scripted gold episodes before training on it."""
    import json

    from burnish.config import ModelConfig
    from burnish.doctor import DEFAULT_ENVS, format_report, run_doctor

    try:
        kwargs = json.loads(chat_template_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("--chat-template-kwargs must be a JSON object")
        section = ModelConfig(
            name=model, chat_template_kwargs=kwargs, reasoning=reasoning, tool_format=tool_format
        )
        report = run_doctor(model, env or DEFAULT_ENVS, section.chat())
    except (ValueError, FileNotFoundError, KeyError) as e:
        _fail(str(e))
    typer.echo(format_report(report))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    raise typer.Exit(0 if report.ok else 1)


app.command("serve")(serve_command)


if __name__ == "__main__":  # pragma: no cover
    main()
