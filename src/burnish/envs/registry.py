"""Find environments by name.

A name is one of:
- a built-in (`arithmetic`, `reverse`, `guess-number`, `calculator`, `keywords`);
- a third-party environment registered under the entry-point group `burnish.environments`
  (`[project.entry-points."burnish.environments"] my-env = "my_pkg.envs:MyEnv"`);
- `PROVIDER/TASK`: a task of another library (`reasoning-gym/basic_arithmetic`,
  `verifiers/NAME`, `openenv/URL`, `dataset/PATH`; `burnish.envs.providers`, docs/providers.md);
- a `module:attr` string naming an environment class, factory or instance; the module is
  imported as `python -m` would, with the current directory on the import path.

Classes and factories are called with the keyword arguments given to `load_env`. A `module:attr`
or entry-point environment is code: loading it runs that module with the user's rights
(docs/security.md).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "burnish.environments"

BUILTINS: dict[str, str] = {
    "arithmetic": "burnish.envs.builtin.arithmetic:ArithmeticEnv",
    "reverse": "burnish.envs.builtin.reverse:ReverseEnv",
    "guess-number": "burnish.envs.builtin.guess_number:GuessNumberEnv",
    "calculator": "burnish.envs.builtin.calculator:CalculatorEnv",
    "keywords": "burnish.envs.builtin.keywords:KeywordsEnv",
}


class UnknownEnvironmentError(KeyError, ValueError):
    """No environment has this name (or it cannot be built with the arguments given)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_envs() -> dict[str, str]:
    """Every environment name, with where it comes from (`module:attr`)."""
    found = dict(BUILTINS)
    for name, ep in _entry_points().items():
        found.setdefault(name, ep.value)
    return found


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:  # resolve like `python -m`
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownEnvironmentError(
            f"cannot import {module_name!r} for environment {target!r}: {e}"
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownEnvironmentError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _unknown(name: str) -> UnknownEnvironmentError:
    """The error for a name that is nothing known, with the nearest name when there is one."""
    from burnish.envs.providers import PROVIDERS, near_provider

    known = sorted(list_envs())
    near = difflib.get_close_matches(name, known, n=1)
    if (provider := near_provider(name)) is not None:
        near = [f"{provider}/{name.partition('/')[2]}"]
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return UnknownEnvironmentError(
        f"unknown environment {name!r}; available: {', '.join(known)}, "
        f"PROVIDER/TASK with a provider of {', '.join(PROVIDERS)} (burnish envs list), "
        f"or a 'module:attr' string{hint}"
    )


def resolve_env(name: str) -> Any:
    """The class, factory or instance `name` refers to, imported but not built."""
    from burnish.envs.providers import provider_factory, split_name

    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise UnknownEnvironmentError(
            f"environment name {name!r} is not a printable, non-empty name; available: "
            f"{', '.join(sorted(list_envs()))} (or a 'module:attr' string)"
        )
    if name in BUILTINS:
        return _import_target(BUILTINS[name])
    if name in (eps := _entry_points()):
        return eps[name].load()
    if split_name(name) is not None:  # before module:attr: an openenv URL holds a ':'
        return provider_factory(name)
    if ":" in name:
        return _import_target(name)
    raise _unknown(name)


def _check_kwargs(name: str, factory: Any, kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments the factory does not take, naming the ones it does."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        near = difflib.get_close_matches(unknown[0], takes, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UnknownEnvironmentError(
            f"environment {name!r} does not take {', '.join(map(repr, unknown))}{hint}; it "
            f"takes: {', '.join(takes) or 'no arguments'}"
        )


def check_env(name: str, kwargs: dict[str, Any]) -> None:
    """Raise `UnknownEnvironmentError` unless `name` resolves and its factory takes `kwargs`
    (nothing is built)."""
    obj = resolve_env(name)
    if callable(obj) and not hasattr(obj, "step") or isinstance(obj, type):
        _check_kwargs(name, obj, kwargs)


def load_env(name: str, **kwargs: Any) -> Any:
    """The environment called `name`, built with `kwargs`.

    Raises:
        UnknownEnvironmentError: the name is none of the above (the message lists the known
            names), or the environment does not take one of `kwargs` (the message lists the
            arguments it takes).
    """
    obj = resolve_env(name)
    factory = callable(obj) and not hasattr(obj, "step") or isinstance(obj, type)
    if factory:
        _check_kwargs(name, obj, kwargs)
    env = obj(**kwargs) if factory else obj
    if kwargs and env is obj:
        raise TypeError(f"environment {name!r} is an instance; it takes no arguments, got {kwargs}")
    if not (hasattr(env, "tasks") and hasattr(env, "step") and hasattr(env, "score")):
        raise TypeError(f"{name!r} gave {type(env).__name__}, which is not an Environment")
    return env
