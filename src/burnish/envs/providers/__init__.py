"""Environments from other libraries, named `PROVIDER/TASK` (docs/providers.md).

`PROVIDERS` is the one table of provider names: each prefix maps to the module that turns its
tasks into burnish environments, the package it needs and the extra that installs it. Each
module imports its library only when a task of it is resolved, so burnish imports without any
of them; a missing package is a `MissingExtraError` naming the extra.

A provider module defines:
- `IMPORT_NAME`: the top-level module of the library it wraps;
- `factory(task) -> callable`: builds the environment from keyword arguments; its signature
  names the arguments it takes (`check_env` checks config kwargs against it);
- `task_names() -> list[str] | None`: the tasks it offers (None: open-ended, such as a URL or a
  file path), used for nearest-name hints and `burnish envs list`;
- `summary() -> str`: one line for `burnish envs list`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from burnish.envs.registry import UnknownEnvironmentError


@dataclass(frozen=True)
class Provider:
    """One provider prefix."""

    module: str
    """The burnish module that builds its environments."""
    distribution: str
    """The package it needs (its PyPI name)."""
    extra: str
    """The burnish extra that installs it: `pip install 'burnish[EXTRA]'`."""


PROVIDERS: dict[str, Provider] = {
    "reasoning-gym": Provider("burnish.envs.providers.reasoning_gym", "reasoning-gym", "envs"),
    "verifiers": Provider("burnish.envs.providers.verifiers_env", "verifiers", "verifiers"),
    "openenv": Provider("burnish.envs.providers.openenv_env", "openenv-core", "openenv"),
    "dataset": Provider("burnish.envs.providers.dataset", "datasets", "datasets"),
}


class MissingExtraError(UnknownEnvironmentError):
    """A provider's package is not installed; the message names the extra that installs it."""


def split_name(name: str) -> tuple[str, str] | None:
    """`(provider, task)` when `name` is `PROVIDER/TASK` with a known provider, else None."""
    prefix, slash, task = name.partition("/")
    return (prefix, task) if slash and prefix in PROVIDERS else None


def near_provider(name: str) -> str | None:
    """The provider prefix `name` probably meant (`reasoning_gym/x` -> `reasoning-gym`)."""
    prefix = name.partition("/")[0]
    near = difflib.get_close_matches(prefix, list(PROVIDERS), n=1, cutoff=0.6)
    return near[0] if near and "/" in name else None


def installed(provider: str) -> bool:
    spec = PROVIDERS[provider]
    mod = importlib.import_module(spec.module)
    return importlib.util.find_spec(mod.IMPORT_NAME) is not None


def provider_module(provider: str, name: str = "") -> Any:
    """The provider's burnish module, after checking its library is installed."""
    spec = PROVIDERS[provider]
    mod = importlib.import_module(spec.module)
    if importlib.util.find_spec(mod.IMPORT_NAME) is None:
        raise MissingExtraError(
            f"environment {name or provider + '/...'!r} needs the {spec.distribution!r} package, "
            f"which is not installed: pip install 'burnish[{spec.extra}]'"
        )
    return mod


def provider_factory(name: str) -> Callable[..., Any]:
    """The factory of environment `name` (`PROVIDER/TASK`), its task checked.

    Raises:
        MissingExtraError: the provider's package is not installed.
        UnknownEnvironmentError: the provider has no such task (with the nearest names).
    """
    parts = split_name(name)
    if parts is None:
        raise UnknownEnvironmentError(
            f"{name!r} names no provider; providers: {', '.join(PROVIDERS)}"
        )
    provider, task = parts
    mod = provider_module(provider, name)
    if not task:
        raise UnknownEnvironmentError(
            f"environment {name!r} names no task after {provider + '/'!r}"
        )
    names = mod.task_names()
    if names is not None and task not in names:
        near = difflib.get_close_matches(task, names, n=3)
        hint = f"; did you mean {', '.join(f'{provider}/{n}' for n in near)}?" if near else ""
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}: {provider} has no task {task!r}{hint} "
            f"({len(names)} tasks: burnish envs list --tasks {provider})"
        )
    return mod.factory(task)


def provider_version(provider: str) -> str | None:
    try:
        return version(PROVIDERS[provider].distribution)
    except PackageNotFoundError:
        return None
