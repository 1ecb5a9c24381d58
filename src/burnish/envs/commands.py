"""What `burnish envs list` and `burnish envs validate` print (the CLI only wires arguments)."""

from __future__ import annotations

from burnish.envs.providers import (
    PROVIDERS,
    installed,
    provider_module,
    provider_version,
)
from burnish.envs.registry import BUILTINS, UnknownEnvironmentError, list_envs, load_env
from burnish.envs.validation import ValidationReport, validate_env


def envs_list_text() -> str:
    """One line per environment: name, origin (built-in or plugin) and `module:attr`; then one
    line per provider: installed or not (with the extra that installs it) and what it offers."""
    envs = list_envs()
    width = max(len(n) for n in envs)
    lines = [
        f"{name.ljust(width)}  {'builtin' if name in BUILTINS else 'plugin '}  {target}"
        for name, target in sorted(envs.items())
    ]
    lines += ["", "providers (PROVIDER/TASK):"]
    pw = max(len(p) for p in PROVIDERS)
    for name, spec in PROVIDERS.items():
        if installed(name):
            mod = provider_module(name)
            state = f"{spec.distribution} {provider_version(name) or '?'}"
            lines.append(f"{name.ljust(pw)}  {state}: {mod.summary()}")
        else:
            lines.append(
                f"{name.ljust(pw)}  not installed: pip install 'burnish[{spec.extra}]' "
                f"({spec.distribution})"
            )
    return "\n".join(lines)


def provider_tasks_text(provider: str) -> str:
    """The tasks of one provider, one `PROVIDER/TASK` name a line."""
    if provider not in PROVIDERS:
        raise UnknownEnvironmentError(
            f"unknown provider {provider!r}; providers: {', '.join(PROVIDERS)}"
        )
    mod = provider_module(provider)
    names = mod.task_names()
    if names is None:
        return f"{provider}: {mod.summary()}"
    return "\n".join(f"{provider}/{n}" for n in names)


def validation_text(report: ValidationReport, max_failures: int = 20) -> str:
    """A summary of a validation, naming the failing tasks."""
    counts = ", ".join(f"{n} {split}" for split, n in report.checked.items())
    if report.ok:
        return f"{report.env}: ok ({counts} tasks: {report.check})"
    lines = [f"{report.env}: {len(report.failures)} failure(s) in {counts} tasks"]
    lines += [f"  [{f.split}] {f.task_id}: {f.message}" for f in report.failures[:max_failures]]
    if len(report.failures) > max_failures:
        lines.append(f"  ... and {len(report.failures) - max_failures} more")
    return "\n".join(lines)


def validate_by_name(name: str, n: int = 200, seed: int = 0) -> ValidationReport:
    return validate_env(load_env(name), n=n, seed=seed)


def validate_command(name: str, n: int = 200, seed: int = 0) -> tuple[str, bool]:
    """`burnish envs validate NAME`: the text to print and whether everything validated.

    NAME is an environment, or a provider alone (`reasoning-gym`): then every task it lists is
    validated, one line each, and a last line counts those that validate.
    """
    if name not in PROVIDERS:
        report = validate_by_name(name, n=n, seed=seed)
        return validation_text(report, max_failures=20), report.ok
    names = provider_module(name).task_names()
    if names is None:
        raise UnknownEnvironmentError(f"provider {name!r} has no task list; name one task")
    lines, ok = [], 0
    for task in names:
        try:
            report = validate_by_name(f"{name}/{task}", n=n, seed=seed)
        except (UnknownEnvironmentError, ValueError, TypeError) as e:
            lines.append(f"{name}/{task}: cannot be built: {e}")
            continue
        ok += report.ok
        lines.append(validation_text(report, max_failures=1))
    lines.append(f"{ok} of {len(names)} {name} tasks validate ({n} train + {n} test tasks each)")
    return "\n".join(lines), ok == len(names)
