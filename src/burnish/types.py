"""The shared nouns of burnish, as frozen dataclasses.

Data flows through a run as: `Task` -> (episode) -> `Trajectory` -> (scoring) -> `Score`,
grouped per task into a `Group`; groups and their advantages are packed into a `TrainBatch`.
Every stage takes and returns these records; no stage passes bare dicts of tensors.

A `Trajectory` is stored as token segments, never as re-tokenized text: what the sampler
produced is exactly what the trainer trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch


class StopReason(str, Enum):
    """Why an episode ended."""

    DONE = "done"
    """The environment said the episode is over (an answer was given, the game was won/lost)."""
    LENGTH = "length"
    """The token budget ran out (the model was cut off mid-answer: a truncated completion)."""
    MAX_TURNS = "max_turns"
    """The turn limit was reached before the environment said done."""
    ERROR = "error"
    """The environment failed (or a tool raised `ToolInfrastructureError`): an infrastructure
    failure, never the model's; the error text is on the trajectory."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call parsed from an assistant message."""

    name: str
    arguments: Mapping[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Message:
    """One chat message. `role` is system, user, assistant or tool."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls parsed from an assistant message (its `content` still holds the raw text)."""
    name: str | None = None
    """For a tool message: the tool that produced it."""
    tool_call_id: str | None = None
    """For a tool message: the id of the call it answers (Mistral's template requires it)."""
    reasoning: str = ""
    """For an assistant message: its reasoning block, left out of `content` (see
    `burnish.models.chat`); the sampled tokens hold both."""

    def to_dict(self) -> dict[str, Any]:
        """The message as the dict a chat template expects."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            d["name"] = self.name
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            d["tool_calls"] = [
                {
                    "type": "function",
                    "id": c.id,
                    "function": {"name": c.name, "arguments": dict(c.arguments)},
                }
                for c in self.tool_calls
            ]
        return d


@dataclass(frozen=True)
class Task:
    """One problem of an environment's split."""

    id: str
    """Stable id, unique within the environment and split (e.g. "train-000042")."""
    prompt: tuple[Message, ...]
    """The first observation, before any environment-specific reset logic."""
    answer: Any = None
    """The gold answer (for `validate` and scoring); any JSON-serialisable value."""
    env: str = ""
    """Name of the environment the task belongs to."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Extra task data (difficulty, keywords, secret number ...)."""


@dataclass(frozen=True)
class StepResult:
    """What an environment returns after one assistant action."""

    observation: tuple[Message, ...] = ()
    """Messages appended to the conversation (user turns, tool results); empty when done."""
    done: bool = False
    state: Any = None
    """The environment's state after the step, passed back on the next call."""
    reward: float | None = None
    """Optional per-step reward (recorded; the episode score comes from `Environment.score`)."""
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """A run of tokens with one origin.

    Sampled segments (`sampled=True`) carry the sampler's logprob of every token and are trained
    on (mask 1). Other segments (prompt, environment observations, tool output, chat-template
    glue) have `logprobs=None` and mask 0.
    """

    tokens: tuple[int, ...]
    sampled: bool
    logprobs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.sampled and (self.logprobs is None or len(self.logprobs) != len(self.tokens)):
            n = None if self.logprobs is None else len(self.logprobs)
            raise ValueError(
                f"a sampled segment needs one logprob per token: {len(self.tokens)} tokens, {n} logprobs"
            )


@dataclass(frozen=True)
class Trajectory:
    """One episode: the token segments, the conversation, and how it ended."""

    task: Task
    segments: tuple[Segment, ...]
    messages: tuple[Message, ...]
    """The whole conversation, prompt included, as text (for scoring, judges, monitors, logs)."""
    stop_reason: StopReason
    turns: int = 1
    """Number of assistant turns."""
    error: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    """Per-episode extras: tool-call counts, per-step rewards, environment outcome ..."""

    @property
    def tokens(self) -> list[int]:
        return [t for s in self.segments for t in s.tokens]

    @property
    def mask(self) -> list[int]:
        return [int(s.sampled) for s in self.segments for _ in s.tokens]

    @property
    def logprobs(self) -> list[float]:
        """Sampler logprobs for sampled tokens, 0.0 elsewhere (aligned with `tokens`)."""
        return [
            lp
            for s in self.segments
            for lp in (s.logprobs if s.sampled else (0.0,) * len(s.tokens))
        ]

    @property
    def num_sampled(self) -> int:
        return sum(len(s.tokens) for s in self.segments if s.sampled)

    @property
    def completion(self) -> str:
        """Text of the assistant messages after the prompt, joined by newlines."""
        n_prompt = len(self.task.prompt)
        return "\n".join(m.content for m in self.messages[n_prompt:] if m.role == "assistant")

    @property
    def truncated(self) -> bool:
        return self.stop_reason == StopReason.LENGTH


@dataclass(frozen=True)
class Score:
    """The reward of one trajectory.

    `value=None` means unscorable (a judge or infrastructure failure): the trajectory is left out
    of the advantage computation, never scored as 0.
    """

    value: float | None
    components: Mapping[str, float] = field(default_factory=dict)
    """Named parts of the reward (e.g. correct, format, judge/<criterion>)."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Evidence: judge reasons, raw outputs, parse errors ..."""


@dataclass(frozen=True)
class Group:
    """All trajectories sampled for one task in one step, and everything the step learns of them.

    One record per group goes through the whole step: scoring fills `scores` and `heldout`,
    dynamic sampling sets `kept`, the advantage computation fills `advantages`; the monitors,
    packing and the run store all read this one list.
    """

    task: Task
    trajectories: tuple[Trajectory, ...]
    scores: tuple[Score, ...]
    heldout: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    """Per held-out scorer (role `monitor`): its value for each trajectory (never in the reward)."""
    kept: bool = True
    """Whether the group is trained on (dynamic sampling drops zero-variance groups)."""
    advantages: tuple[float | None, ...] | None = None
    """One advantage per trajectory once computed (None: unscorable); None before that and for
    groups that are not kept."""
    policy_version: int | None = None
    """The policy that sampled the group, as the number of optimizer steps behind it (set by
    Ray rollout workers, `burnish.scale`; None in a single-process run, where it is the step)."""

    def __post_init__(self) -> None:
        n = len(self.trajectories)
        if len(self.scores) != n:
            raise ValueError(
                f"group of task {self.task.id!r}: {n} trajectories but {len(self.scores)} scores"
            )
        for name, values in self.heldout.items():
            if len(values) != n:
                raise ValueError(
                    f"group of task {self.task.id!r}: {n} trajectories but {len(values)} "
                    f"held-out scores from {name!r}"
                )
        if self.advantages is not None and len(self.advantages) != n:
            raise ValueError(
                f"group of task {self.task.id!r}: {n} trajectories but "
                f"{len(self.advantages)} advantages"
            )

    @property
    def rewards(self) -> list[float | None]:
        return [s.value for s in self.scores]


@dataclass(frozen=True)
class TrainBatch:
    """Sequences of one optimizer step, ready for the loss.

    Rows are right-padded to the longest sequence; padded slots have mask 0. The training step
    computes the loss normalisers (valid tokens, sequences) over each optimizer step's rows, so a
    micro-batch slice gives the same gradient contribution it would have in the full batch.
    """

    tokens_B_T: torch.Tensor
    """[B, T] int64 token ids (prompt + completion + environment tokens)."""
    mask_B_T: torch.Tensor
    """[B, T] float, 1 on sampled tokens (the loss positions), 0 elsewhere."""
    sampler_logp_B_T: torch.Tensor
    """[B, T] float, the sampler's logprob of each sampled token (0 elsewhere): compared with the
    trainer's log-probs every step (`mismatch/*` metrics)."""
    advantages_B: torch.Tensor
    """[B] float, one advantage per sequence."""
    lengths_B: torch.Tensor
    """[B] int64, number of real (non-pad) tokens per row."""
    advantages_B_T: torch.Tensor | None = None
    """[B, T] float per-token advantages (on-policy distillation); when set the loss uses them
    instead of `advantages_B`."""

    @property
    def size(self) -> int:
        return int(self.tokens_B_T.shape[0])
