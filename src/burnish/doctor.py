"""`burnish doctor`: check that a model's chat format works with burnish before training on it.

For each environment it plays one scripted gold episode through the real episode runner: the
completions are the environment's gold answers (`env.gold_transcript`) written the way this model
writes them: in its tool-call format, after a reasoning block when its template has one, closed
by its end-of-turn token (all taken from the chat template's own rendering of an assistant
message). It then checks:

- the sampled segments hold exactly the scripted tokens;
- every turn's context decodes to what the template renders for the conversation at that turn
  (or, for a template that is not prefix-stable, to the recorded sequence plus the template's
  rendering of the new messages: see docs/models.md §2);
- the gold episode earns the environment's maximum score (the environment saw the answer
  without end tokens and reasoning, and the tool calls were parsed).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from burnish.envs import load_env
from burnish.envs.tool_calls import COMPACT
from burnish.models.chat import PROBE_USER, ChatFormat, chat_format_of
from burnish.rollout.base import Completion, SamplingParams
from burnish.rollout.episode import ChatCodec, run_episode
from burnish.types import Message, Trajectory

DEFAULT_ENVS = ("arithmetic", "guess-number", "calculator")
REASONING_TEXT = "Let me work this out step by step."


@dataclasses.dataclass(frozen=True)
class EnvCheck:
    """What the gold episode of one environment showed."""

    ok: bool
    prefix_stable: bool
    exact: bool
    gold_score: float
    max_score: float
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["problems"] = list(self.problems)
        return d


@dataclasses.dataclass(frozen=True)
class DoctorReport:
    """The whole check of one model."""

    model: str
    end_token_ids: tuple[int, ...]
    tool_format: str | None
    reasoning: str | None
    envs: Mapping[str, EnvCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.envs.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `burnish doctor --json` prints."""
        return {
            "model": self.model,
            "end_token_ids": list(self.end_token_ids),
            "tool_format": self.tool_format,
            "reasoning": self.reasoning,
            "ok": self.ok,
            "envs": {name: c.to_dict() for name, c in self.envs.items()},
        }


class _ScriptSampler:
    """Returns the scripted completions in order, whatever the prompt (records the prompts)."""

    def __init__(self, scripts: Sequence[Sequence[int]]) -> None:
        self.scripts = [tuple(s) for s in scripts]
        self.prompts: list[list[int]] = []

    async def sample(
        self, prompts: list[list[int]], params: SamplingParams, adapter: str | None = None
    ) -> list[Completion]:
        turn = len(self.prompts)
        self.prompts.append(list(prompts[0]))
        if turn >= len(self.scripts):
            raise RuntimeError(f"the episode asked for turn {turn + 1}; the script has {turn}")
        ids = self.scripts[turn]
        return [Completion(0, ids, tuple(-0.1 for _ in ids), "stop")]

    async def sync(self, policy: Any) -> None:
        return None


def assistant_script(codec: ChatCodec, answer: str) -> tuple[str, str | None]:
    """How this model writes `answer` as an assistant turn: the text the template renders after
    its generation prompt, up to and including the end-of-turn token; and a problem, if any."""
    fmt = codec.fmt
    prompt = [Message("user", PROBE_USER)]
    start = codec.render(prompt, add_generation_prompt=True)
    content = answer
    if fmt.reasoning is not None and fmt.reasoning.close not in start:
        content = fmt.reasoning.write(REASONING_TEXT, answer)
    full = codec.render([*prompt, Message("assistant", content)], add_generation_prompt=False)
    if not full.startswith(start):
        return content, (
            "the chat template's generation prompt is not the start of its assistant turn, so "
            "sampled text cannot be rendered back; fix the template's add_generation_prompt block"
        )
    after = full[len(start) :]
    if not fmt.turn_end:
        eos = codec.tokenizer.eos_token or ""
        return after + eos, (
            "the chat template writes no end-of-turn token after an assistant message; burnish "
            "ends turns on the tokenizer's EOS instead"
        )
    cut = after.rfind(fmt.turn_end)
    return after[: cut + len(fmt.turn_end)], None


def replay_contexts(codec: ChatCodec, traj: Trajectory) -> tuple[bool, str | None]:
    """`(prefix_stable, problem)`: whether every sampled segment of `traj` was sampled after
    exactly the text the template renders for the conversation at that turn (for a template
    that rewrites history: after the recorded text plus the template's rendering of the new
    messages). `problem` describes the first turn that was not (None when all were)."""
    sampled = [i for i, s in enumerate(traj.segments) if s.sampled]
    raws, ends = [], []
    for i in sampled:
        ids = traj.segments[i].tokens
        closed = bool(ids) and ids[-1] in codec.end_ids
        raws.append(codec.decode(ids[:-1] if closed else ids))
        ends.append(closed)
    raw = iter(raws)
    chat = [Message("assistant", next(raw)) if m.role == "assistant" else m for m in traj.messages]
    stable, text = True, ""
    for k, index in enumerate(sampled):
        context = codec.decode([t for s in traj.segments[:index] for t in s.tokens])
        upto = _upto_assistant(chat, k)
        expected = codec.render(upto, add_generation_prompt=True)
        if k > 0 and not expected.startswith(text):
            stable = False
            new = upto[len(_upto_assistant(chat, k - 1)) + 1 :]
            expected = text + codec.delta(new, closed=ends[k - 1])
        if context != expected:
            return stable, (
                f"turn {k + 1} was sampled after {context[-120:]!r}, but the template renders "
                f"{expected[-120:]!r}"
            )
        text = expected + codec.decode(traj.segments[index].tokens)
    return stable, None


def _upto_assistant(chat: Sequence[Message], n: int) -> list[Message]:
    """The conversation before its `n`-th assistant message (0-based)."""
    seen = 0
    for i, m in enumerate(chat):
        if m.role == "assistant":
            if seen == n:
                return list(chat[:i])
            seen += 1
    return list(chat)


async def check_env(env: Any, tokenizer: Any, fmt: ChatFormat) -> EnvCheck:
    """Play one scripted gold episode of `env` and report what it showed."""
    max_score = float(getattr(env, "max_reward", 1.0))
    tools = tuple(getattr(env, "tool_schemas", ()) or ())
    if tools and fmt.tool_parser is None:
        problem = (
            f"{env.name} needs tool calls, but this model's chat template cannot render a tool "
            "result (role 'tool'), so the model cannot play it; use a model whose template has "
            "a tool role (or set model.tool_format if it does)"
        )
        return EnvCheck(False, True, False, 0.0, max_score, (problem,))
    task = next(iter(env.tasks("test", 0)))
    codec = ChatCodec(tokenizer, tools, fmt)
    gold, _ = await env.gold_transcript(task, fmt.tool_parser or COMPACT)
    texts, problems = [], []
    for m in gold[len(task.prompt) :]:
        if m.role == "assistant":
            text, problem = assistant_script(codec, m.content)
            texts.append(text)
            if problem and problem not in problems:
                problems.append(problem)
    scripts = [codec.encode(t) for t in texts]
    sampler = _ScriptSampler(scripts)
    traj = await run_episode(env, task, sampler, tokenizer, SamplingParams(), chat=fmt)
    if traj.error is not None:
        problems.append(f"the gold episode failed: {traj.error}")
    sampled = [list(s.tokens) for s in traj.segments if s.sampled]
    exact = sampled == [list(s) for s in scripts[: len(sampled)]] and traj.error is None
    if not exact and traj.error is None:
        problems.append("the recorded sampled tokens differ from the scripted completions")
    stable, problem = replay_contexts(codec, traj)
    if problem:
        exact = False
        problems.append(problem)
    score = env.score(task, traj).value or 0.0
    if score < max_score:
        answers = [m.content for m in traj.messages if m.role == "assistant"]
        problems.append(
            f"the gold episode scored {score:g} of {max_score:g}; the environment saw the "
            f"answers {answers!r}: check the end tokens, model.reasoning and model.tool_format"
        )
    ok = exact and score >= max_score and not problems
    return EnvCheck(ok, stable, exact, float(score), max_score, tuple(problems))


def run_doctor(
    model: str, envs: Sequence[str] = DEFAULT_ENVS, chat: Mapping[str, Any] | None = None
) -> DoctorReport:
    """Load `model` (hub id, directory or burnish-tiny) and check it on every environment."""
    from burnish.models.load import load_model

    _, tokenizer = load_model(model, chat=dict(chat or {}))
    fmt = chat_format_of(tokenizer)
    checks = {name: asyncio.run(check_env(load_env(name), tokenizer, fmt)) for name in envs}
    return DoctorReport(
        model=model,
        end_token_ids=fmt.end_token_ids,
        tool_format=fmt.tool_parser.name if fmt.tool_parser is not None else None,
        reasoning=fmt.reasoning.name if fmt.reasoning is not None else None,
        envs=checks,
    )


def format_report(report: DoctorReport, tokenizer_decode: Any = None) -> str:
    """The plain-text report `burnish doctor` prints."""
    lines = [
        f"model          {report.model}",
        f"end tokens     {list(report.end_token_ids)}",
        f"tool format    {report.tool_format or 'none (the template has no tool role)'}",
        f"reasoning      {report.reasoning or 'none'}",
    ]
    for name, c in report.envs.items():
        status = "ok" if c.ok else "NOT OK"
        lines.append(
            f"{name:<14} {status}: gold score {c.gold_score:g}/{c.max_score:g}, segments "
            f"{'exact' if c.exact else 'NOT exact'}, template "
            f"{'prefix-stable' if c.prefix_stable else 'rewrites history (handled)'}"
        )
        lines += [f"  problem: {p}" for p in c.problems]
    lines.append("ok" if report.ok else "not ok: fix the problems above before training")
    return "\n".join(lines)
