"""Find environments by name.

A name is one of:
- a built-in (`arithmetic`, `reverse`, `guess-number`, `calculator`, `keywords`);
- a third-party environment registered under the entry-point group `burnish.environments`
  (`[project.entry-points."burnish.environments"] my-env = "my_pkg.envs:MyEnv"`);
- a `module:attr` string naming an environment class, factory or instance.

Classes and factories are called with the keyword arguments given to `load_env`.
"""

from __future__ import annotations

import importlib
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


class UnknownEnvironmentError(KeyError):
    """No environment has this name."""

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


def load_env(name: str, **kwargs: Any) -> Any:
    """The environment called `name`, built with `kwargs`.

    Raises:
        UnknownEnvironmentError: the name is none of the above; the message lists the known names.
    """
    if name in BUILTINS:
        obj = _import_target(BUILTINS[name])
    elif name in (eps := _entry_points()):
        obj = eps[name].load()
    elif ":" in name:
        obj = _import_target(name)
    else:
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; available: {', '.join(sorted(list_envs()))} "
            f"(or a 'module:attr' string)"
        )
    env = (
        obj(**kwargs)
        if callable(obj) and not hasattr(obj, "step") or isinstance(obj, type)
        else obj
    )
    if kwargs and env is obj:
        raise TypeError(f"environment {name!r} is an instance; it takes no arguments, got {kwargs}")
    if not (hasattr(env, "tasks") and hasattr(env, "step") and hasattr(env, "score")):
        raise TypeError(f"{name!r} gave {type(env).__name__}, which is not an Environment")
    return env
