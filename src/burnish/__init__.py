"""burnish: reinforcement-learning fine-tuning of language models.

Train a LoRA adapter with a GRPO-family algorithm on your environments, watch for reward hacking
while it trains, and evaluate the result against the base model. Guides: ``docs/`` in the
repository (``docs/README.md``).

The public API, imported lazily (``import burnish`` alone does not import torch):

Environments (`burnish.envs`):
    Environment    the protocol: ``tasks``, ``reset``, ``step``, ``score``, ``validate``.
    SingleTurnEnv  one prompt, one answer, a score function of the answer text.
    MultiTurnEnv   several turns; the subclass writes ``step``.
    ToolEnv        the assistant may call typed Python functions before answering.
    EnvMix         a weighted mixture of environments.
    load_env       an environment by built-in name, entry-point name or ``"module:attr"``.

Records (`burnish.types`):
    Task           one problem of a split: id, prompt messages, gold answer, info.
    Message        one chat message (role, content, parsed tool calls).
    ToolCall       one tool call parsed from an assistant message.
    StepResult     what ``Environment.step`` returns: observation, done, state, reward.
    StopReason     why an episode ended: done, length, max_turns, error.
    Trajectory     one episode as token segments plus the conversation.
    Score          a reward with components; ``Score(None)`` means unscorable.
    Group          the trajectories of one task in one step, with their scores.

Configuration and runs:
    load_config    a `RunConfig` from a TOML file plus ``section.field=value`` overrides.
    RunConfig      the typed configuration of a run (`burnish.config`).
    ConfigError    raised for a bad file or field; the message names the field.
    train          run RL training as configured; returns the run summary
                   (`burnish.train.loop.train`).
    evaluate       pass@k, reward, turns and tokens of a model on an environment
                   (`burnish.eval.evaluate`).
    __version__    the package version.

``burnish.train`` is the function; the subpackage of the same name is imported by its full path
(``from burnish.train.loop import train``).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Environment": "burnish.envs",
    "SingleTurnEnv": "burnish.envs",
    "MultiTurnEnv": "burnish.envs",
    "ToolEnv": "burnish.envs",
    "EnvMix": "burnish.envs",
    "load_env": "burnish.envs",
    "Task": "burnish.types",
    "Message": "burnish.types",
    "ToolCall": "burnish.types",
    "StepResult": "burnish.types",
    "StopReason": "burnish.types",
    "Trajectory": "burnish.types",
    "Score": "burnish.types",
    "Group": "burnish.types",
    "load_config": "burnish.config",
    "RunConfig": "burnish.config",
    "ConfigError": "burnish.config",
    "train": "burnish.train.loop",
    "evaluate": "burnish.eval",
}
"""Exported name -> module that defines it (imported on first access)."""

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'burnish' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps the exported `train` function when the `burnish.train` subpackage is imported.

    Importing a submodule sets it as an attribute of its parent package, which would replace
    `burnish.train` (the function) with `burnish.train` (the subpackage) once anything imports
    `burnish.train.loop`. Imports go through `sys.modules`, so dropping that one assignment
    changes nothing else.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
