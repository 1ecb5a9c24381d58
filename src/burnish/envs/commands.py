"""What `burnish envs list` and `burnish envs validate` print (the CLI only wires arguments)."""

from __future__ import annotations

from burnish.envs.registry import BUILTINS, list_envs, load_env
from burnish.envs.validation import ValidationReport, validate_env


def envs_list_text() -> str:
    """One line per environment: name, origin (built-in or plugin) and `module:attr`."""
    envs = list_envs()
    width = max(len(n) for n in envs)
    return "\n".join(
        f"{name.ljust(width)}  {'builtin' if name in BUILTINS else 'plugin '}  {target}"
        for name, target in sorted(envs.items())
    )


def validation_text(report: ValidationReport, max_failures: int = 20) -> str:
    """A summary of a validation, naming the failing tasks."""
    counts = ", ".join(f"{n} {split}" for split, n in report.checked.items())
    if report.ok:
        return f"{report.env}: ok ({counts} tasks: every gold answer earns the maximum reward)"
    lines = [f"{report.env}: {len(report.failures)} failure(s) in {counts} tasks"]
    lines += [f"  [{f.split}] {f.task_id}: {f.message}" for f in report.failures[:max_failures]]
    if len(report.failures) > max_failures:
        lines.append(f"  ... and {len(report.failures) - max_failures} more")
    return "\n".join(lines)


def validate_by_name(name: str, n: int = 200, seed: int = 0) -> ValidationReport:
    return validate_env(load_env(name), n=n, seed=seed)
