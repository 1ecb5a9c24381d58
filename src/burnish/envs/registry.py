"""Find environments by name.

A name is one of:
- a built-in (`arithmetic`, `reverse`, `guess-number`, `calculator`, `keywords`);
- a third-party environment registered under the entry-point group `burnish.environments`
  (`[project.entry-points."burnish.environments"] my-env = "my_pkg.envs:MyEnv"`);
- a `module:attr` string naming an environment class, factory or instance; the module is
  imported as `python -m` would, with the current directory on the import path.

Classes and factories are called with the keyword arguments given to `load_env`. A `module:attr`
or entry-point environment is code: loading it runs that module with the user's rights
(docs/security.md).
"""

from __future__ import annotations

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


def resolve_env(name: str) -> Any:
    """The class, factory or instance `name` refers to, imported but not built."""
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise UnknownEnvironmentError(
            f"environment name {name!r} is not a printable, non-empty name; available: "
            f"{', '.join(sorted(list_envs()))} (or a 'module:attr' string)"
        )
    if name in BUILTINS:
        return _import_target(BUILTINS[name])
    if name in (eps := _entry_points()):
        return eps[name].load()
    if ":" in name:
        return _import_target(name)
    raise UnknownEnvironmentError(
        f"unknown environment {name!r}; available: {', '.join(sorted(list_envs()))} "
        f"(or a 'module:attr' string)"
    )


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
        raise UnknownEnvironmentError(
            f"environment {name!r} does not take {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(takes) or 'no arguments'}"
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
