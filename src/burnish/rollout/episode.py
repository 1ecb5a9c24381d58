"""Run environments against a sampler: the framework-owned episode loop.

One episode:
1. `env.reset(task)` gives the first messages; they are rendered with the tokenizer's chat
   template (with the environment's tool schemas when it has tools) plus the generation prompt,
   tokenized, and recorded as a mask-0 segment.
2. The sampler continues the recorded tokens; its tokens and logprobs are recorded as they are,
   as a mask-1 segment (the end token it sampled included). The assistant message is the decoded
   completion without the trailing end token; tool calls are parsed from it (only when the
   environment has tools) with the `ToolCallParser` chosen for the tokenizer.
3. `env.step` answers; its observation is appended to the conversation. If the episode goes on,
   the whole conversation is rendered again and only the new suffix (the template's turn glue,
   the observation and the generation prompt) is tokenized and recorded as a mask-0 segment.
   Sampled tokens are never re-tokenized.
4. The episode stops when the environment says done (`DONE`), at the turn limit (`MAX_TURNS`),
   when a completion is cut off or the next turn would not fit in `max_tokens` (`LENGTH`), or
   when the environment fails (`ERROR`: the trajectory keeps what was recorded, and
   the error text). Sampler failures are infrastructure failures and propagate.

Template prefix property: rendering the conversation after a turn must start with the text
recorded so far (prompt rendering + decoded sampled text). Templates that rewrite earlier
assistant turns (strip whitespace, drop reasoning) break it; the runner then takes the suffix
after the rendering of the conversation up to the assistant turn, counts the event in
`info["template_mismatches"]`, and raises `TemplatePrefixError` if even that is not a prefix.
Observations returned with `done=True` are kept in `messages` but never tokenized.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from burnish.envs.tool_calls import ToolCallParser, parser_for
from burnish.rollout.base import Completion, Sampler, SamplingParams
from burnish.seeds import derive_seed
from burnish.types import Message, Segment, StopReason, Task, Trajectory

DEFAULT_MAX_TOKENS = 4096


class TemplatePrefixError(RuntimeError):
    """The chat template renders earlier turns differently from what was recorded."""


def message_dict(message: Message) -> dict[str, Any]:
    """A message as the chat template should see it.

    Assistant messages are rendered from their raw text (which already holds any tool calls in
    the model's own syntax), never from structured `tool_calls`, so the template reproduces
    exactly what was sampled.
    """
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return message.to_dict()


class ChatCodec:
    """Chat-template rendering, encoding and decoding for one tokenizer."""

    def __init__(self, tokenizer: Any, tools: Sequence[dict[str, Any]] = ()) -> None:
        self.tokenizer = tokenizer
        self.tools = list(tools)
        eos = getattr(tokenizer, "eos_token_id", None)
        eos_ids = eos if isinstance(eos, list) else [eos]
        special = list(getattr(tokenizer, "all_special_ids", []) or [])
        self.end_ids = {i for i in [*eos_ids, *special] if i is not None}

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        kwargs: dict[str, Any] = {"tools": self.tools} if self.tools else {}
        text = self.tokenizer.apply_chat_template(
            [message_dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **kwargs,
        )
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}")
        return text

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def content_of(self, completion: Completion, stop_ids: Sequence[int]) -> str:
        """The assistant text of a completion: its decoded tokens without the end token."""
        ids = list(completion.token_ids)
        if completion.finish_reason == "stop" and ids and ids[-1] in self.end_ids | set(stop_ids):
            ids = ids[:-1]
        return self.decode(ids)


def _resolve(env: Any, task: Task, attr: str, default: Any) -> Any:
    """An environment attribute for this task (routed through `EnvMix.env_of` when present)."""
    inner = env.env_of(task) if hasattr(env, "env_of") else env
    return getattr(inner, attr, default)


@dataclasses.dataclass
class _Recorder:
    """The growing token record of one episode."""

    codec: ChatCodec
    segments: list[Segment] = dataclasses.field(default_factory=list)
    text: str = ""
    num_tokens: int = 0
    mismatches: int = 0

    def tokens(self) -> list[int]:
        return [t for s in self.segments for t in s.tokens]

    def add_text(self, text: str) -> None:
        ids = self.codec.encode(text)
        if ids:
            self.segments.append(Segment(tuple(ids), sampled=False))
        self.text += text
        self.num_tokens += len(ids)

    def add_sampled(self, completion: Completion) -> None:
        self.segments.append(Segment(completion.token_ids, True, completion.logprobs))
        self.text += self.codec.decode(completion.token_ids)
        self.num_tokens += len(completion.token_ids)

    def observation_suffix(self, messages: Sequence[Message], n_through_action: int) -> str:
        """The text the template adds after the recorded text (glue, observation, gen prompt)."""
        full = self.codec.render(messages, add_generation_prompt=True)
        if full.startswith(self.text):
            return full[len(self.text) :]
        base = self.codec.render(messages[:n_through_action], add_generation_prompt=False)
        if not full.startswith(base):
            raise TemplatePrefixError(
                "the chat template does not render the conversation as a continuation of its "
                f"earlier turns: recorded {self.text[-80:]!r}, rendered {full[:200]!r}..."
            )
        self.mismatches += 1
        return full[len(base) :]


async def run_episode(
    env: Any,
    task: Task,
    sampler: Sampler,
    tokenizer: Any,
    params: SamplingParams,
    *,
    max_turns: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    adapter: str | None = None,
    tool_parser: ToolCallParser | None = None,
) -> Trajectory:
    """Run one episode of `env` on `task` and record it as token segments.

    Args:
        env: an `Environment` (or `EnvMix`).
        task: the task to play.
        sampler: samples one completion per turn (`params.n` is ignored: repeat the task for a
            group).
        tokenizer: a tokenizer with a chat template (Hugging Face API).
        params: sampling parameters; `max_new_tokens` caps each turn. With a seed, turn k samples
            with `derive_seed(seed, k)` (`run_episodes` first derives one seed per episode).
        max_turns: assistant turns allowed; None means the environment's `max_turns`.
        max_tokens: cap on the whole trajectory's length (prompt, environment and sampled tokens).
        adapter: the adapter name passed to the sampler.
        tool_parser: the tool-call syntax; None chooses it from the tokenizer (`parser_for`).

    Returns:
        The trajectory; `info` holds `turns`, `tool_calls`, `step_rewards`,
        `template_mismatches` and `sampled_tokens`.

    One function on purpose: the episode is a state machine over one recorder (its token
    segments, budget and messages), and every branch that ends it must be read beside the others.
    """
    tools = _resolve(env, task, "tool_schemas", ())
    limit = max_turns if max_turns is not None else _resolve(env, task, "max_turns", 1)
    parser = (tool_parser or parser_for(tokenizer)) if tools else None
    rec = _Recorder(ChatCodec(tokenizer, tools))
    params = dataclasses.replace(params, n=1)
    messages: list[Message] = []
    state: Any = None
    turns = n_calls = 0
    rewards: list[float | None] = []
    error: str | None = None
    stop = StopReason.MAX_TURNS
    try:
        messages = list(await env.reset(task))
    except Exception as e:  # the environment's failure: recorded, the batch goes on
        error, stop, limit = f"{type(e).__name__}: {e}", StopReason.ERROR, 0
    else:
        rec.add_text(rec.codec.render(messages, add_generation_prompt=True))
    while turns < limit:
        budget = max_tokens - rec.num_tokens
        if budget <= 0:
            stop = StopReason.LENGTH
            break
        turn_params = dataclasses.replace(
            params,
            max_new_tokens=min(params.max_new_tokens, budget),
            seed=None if params.seed is None else derive_seed(params.seed, turns),
        )
        completions = await sampler.sample([rec.tokens()], turn_params, adapter)
        if len(completions) != 1:
            raise RuntimeError(f"sampler returned {len(completions)} completions for 1 prompt")
        completion = completions[0]
        rec.add_sampled(completion)
        turns += 1
        content = rec.codec.content_of(completion, params.stop_token_ids)
        calls = parser.parse(content) if parser is not None else ()
        action = Message("assistant", content, tool_calls=calls)
        messages.append(action)
        n_calls += len(calls)
        if completion.finish_reason == "length":
            stop = StopReason.LENGTH
            break
        try:
            result = await env.step(task, state, action)
        except Exception as e:  # the environment's failure (a tool's errors are observations)
            error, stop = f"{type(e).__name__}: {e}", StopReason.ERROR
            break
        state = result.state
        rewards.append(result.reward)
        n_through_action = len(messages)
        messages += result.observation
        if result.done:
            stop = StopReason.DONE
            break
        if turns >= limit:
            break
        suffix = rec.observation_suffix(messages, n_through_action)
        if rec.num_tokens + len(rec.codec.encode(suffix)) >= max_tokens:
            stop = StopReason.LENGTH  # no room left to sample the next turn
            break
        rec.add_text(suffix)
    return Trajectory(
        task=task,
        segments=tuple(rec.segments),
        messages=tuple(messages),
        stop_reason=stop,
        turns=turns,
        error=error,
        info={
            "turns": turns,
            "tool_calls": n_calls,
            "step_rewards": rewards,
            "template_mismatches": rec.mismatches,
            "sampled_tokens": sum(len(s.tokens) for s in rec.segments if s.sampled),
        },
    )


def _env_for(envs: Any, task: Task, index: int) -> Any:
    if isinstance(envs, Mapping):
        if task.env not in envs:
            raise KeyError(f"task {task.id!r} names environment {task.env!r}, not in {list(envs)}")
        return envs[task.env]
    if isinstance(envs, Sequence):
        return envs[index]
    return envs


async def run_episodes(
    env_or_envs: Any,
    tasks: Sequence[Task],
    sampler: Sampler,
    tokenizer: Any,
    params: SamplingParams,
    *,
    concurrency: int = 64,
    max_turns: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    adapter: str | None = None,
    tool_parser: ToolCallParser | None = None,
) -> list[Trajectory]:
    """Run many episodes concurrently (at most `concurrency` at a time), in task order.

    Args:
        env_or_envs: one environment for all tasks, a sequence aligned with `tasks`, or a
            mapping from environment name to environment (looked up by `Task.env`).
        tasks: the tasks; repeat a task to sample a group for it.
        concurrency: episodes in flight at once; their sampler calls overlap, so a batching
            sampler sees them as one batch.

    Environment errors end only their own episode (recorded as `StopReason.ERROR`); a sampler
    failure cancels the batch and propagates.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if isinstance(env_or_envs, Sequence) and len(env_or_envs) != len(tasks):
        raise ValueError(f"{len(env_or_envs)} environments for {len(tasks)} tasks")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, task: Task) -> Trajectory:
        # a seeded run gives every episode its own stream, or a group's samples would be equal
        seed = None if params.seed is None else derive_seed(params.seed, i)
        async with gate:
            return await run_episode(
                _env_for(env_or_envs, task, i),
                task,
                sampler,
                tokenizer,
                dataclasses.replace(params, seed=seed),
                max_turns=max_turns,
                max_tokens=max_tokens,
                adapter=adapter,
                tool_parser=tool_parser,
            )

    futures = [asyncio.ensure_future(one(i, t)) for i, t in enumerate(tasks)]
    try:
        return list(await asyncio.gather(*futures))
    except BaseException:
        for f in futures:
            f.cancel()
        raise
