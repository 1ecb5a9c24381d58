"""Environments: the protocol, helpers, registry and built-ins (docs/environments.md)."""

from burnish.envs.base import (
    BaseEnv,
    Environment,
    EnvMix,
    EnvValidationError,
    MultiTurnEnv,
    SingleTurnEnv,
    generate_tasks,
    split_of,
)
from burnish.envs.registry import ENTRY_POINT_GROUP, UnknownEnvironmentError, list_envs, load_env
from burnish.envs.tool_calls import (
    COMPACT,
    HERMES,
    CompactToolParser,
    HermesToolParser,
    ToolCallParser,
    parser_for,
)
from burnish.envs.tools import ToolEnv, ToolError, ToolInfrastructureError, tool_schema
from burnish.envs.validation import ValidationReport, validate_env

__all__ = [
    "COMPACT",
    "ENTRY_POINT_GROUP",
    "HERMES",
    "BaseEnv",
    "CompactToolParser",
    "EnvMix",
    "EnvValidationError",
    "Environment",
    "HermesToolParser",
    "MultiTurnEnv",
    "SingleTurnEnv",
    "ToolCallParser",
    "ToolEnv",
    "ToolError",
    "ToolInfrastructureError",
    "UnknownEnvironmentError",
    "ValidationReport",
    "generate_tasks",
    "list_envs",
    "load_env",
    "parser_for",
    "split_of",
    "tool_schema",
    "validate_env",
]
