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
5. However it stopped, an environment with a `close(task, state)` method gets it called with
   the last state (a session to end); a failing close makes the episode an `ERROR`.

Content: the assistant message an environment sees is the completion without its end token (any
of the model's end-of-turn ids, `burnish.models.chat.ChatFormat.end_token_ids`) and without its
reasoning block (`Message.reasoning` keeps that); the template always renders the raw text.

Multi-turn with templates that rewrite history: burnish keeps one running token sequence per
episode and never re-renders what was recorded. After a turn, the whole conversation is rendered
and, when that rendering starts with the recorded text (the template is prefix-stable), the rest
is appended. When it does not (Qwen3 drops earlier `<think>` blocks, Llama trims content,
Mistral moves the system prompt to the last user turn), only the new environment messages are
rendered, after a fixed probe exchange, and that text (the template's turn glue, the messages and
the generation prompt) is appended; `info["template_mismatches"]` counts such turns. Either way
every sampled token is trained in exactly the context it was sampled in: the recorded sequence.
A template that cannot render a message at all (Gemma and a tool result) ends that episode
with `ERROR`, never the run. See docs/models.md §2.
Observations returned with `done=True` are kept in `messages` but never tokenized.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from burnish.envs.tool_calls import ToolCallParser
from burnish.models.chat import PROBE_ANSWER, PROBE_USER, ChatFormat, chat_format_of, merge_system
from burnish.models.chat import render as render_dicts
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


_MEMO: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
"""Per tokenizer, recent renders and encodings: a group's episodes all open with one prompt."""
_MEMO_SIZE = 4096


def _memo(tokenizer: Any) -> dict[Any, Any]:
    try:
        return _MEMO.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer without weak references: no memo
        return {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = value
    return value


class ChatCodec:
    """Chat-template rendering, encoding and decoding for one tokenizer and chat format.

    Renders and encodings are remembered per tokenizer (the G episodes of a group render and
    encode the same first prompt); both are pure functions of what the key holds.
    """

    def __init__(
        self, tokenizer: Any, tools: Sequence[dict[str, Any]] = (), fmt: ChatFormat | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.tools = list(tools)
        self.fmt = fmt if fmt is not None else chat_format_of(tokenizer)
        self.end_ids = set(self.fmt.end_token_ids)
        self._memo = _memo(tokenizer)
        self._setting = (
            getattr(tokenizer, "chat_template", None),  # a template set later renders anew
            json.dumps(self.tools, sort_keys=True, default=repr),
            repr(sorted(self.fmt.template_kwargs.items())),
            self.fmt.system_role,
        )

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        try:
            key = ("render", tuple(messages), add_generation_prompt, self._setting)
            hash(key)
        except TypeError:  # a message holding a dict (tool-call arguments): render it afresh
            key = None
        if key is not None and key in self._memo:
            return self._memo[key]
        dicts = [message_dict(m) for m in messages]
        if not self.fmt.system_role:
            dicts = merge_system(dicts)
        text = render_dicts(
            self.tokenizer, dicts, add_generation_prompt, self.tools, self.fmt.template_kwargs
        )
        return text if key is None else _remember(self._memo, key, text)

    def delta(self, new: Sequence[Message], closed: bool) -> str:
        """The template's text for `new` messages after an assistant turn, and the generation
        prompt: rendered after a probe exchange, so earlier history cannot change it.

        `closed`: the recorded turn already ends with an end token, so the template's own
        end-of-turn text is left out.
        """
        probe = [Message("user", PROBE_USER), Message("assistant", PROBE_ANSWER)]
        text = self.render([*probe, *new], add_generation_prompt=True)
        _, found, after = text.rpartition(PROBE_ANSWER)
        if not found:
            raise TemplatePrefixError(
                f"the chat template does not render assistant content verbatim: {text[:200]!r}"
            )
        end = self.fmt.turn_end
        if closed and end and after.startswith(end):
            after = after[len(end) :]
        return after

    def encode(self, text: str) -> list[int]:
        key = ("encode", text)
        ids = self._memo.get(key)
        if ids is None:
            ids = _remember(
                self._memo, key, tuple(self.tokenizer.encode(text, add_special_tokens=False))
            )
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def ends_turn(self, completion: Completion, stop_ids: Sequence[int]) -> bool:
        """Whether the completion stopped on an end token (one of the model's or a stop id)."""
        ids = completion.token_ids
        return (
            completion.finish_reason == "stop"
            and bool(ids)
            and ids[-1] in self.end_ids | set(stop_ids)
        )

    def content_of(self, completion: Completion, stop_ids: Sequence[int]) -> str:
        """The assistant text of a completion: its decoded tokens without the end token."""
        ids = list(completion.token_ids)
        if self.ends_turn(completion, stop_ids):
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

    def observation_suffix(self, chat: Sequence[Message], n_before: int, closed: bool) -> str:
        """The text to append after the recorded text: the rest of the whole conversation's
        rendering when the template is prefix-stable, else the rendering of the new messages
        alone (`ChatCodec.delta`). `chat[n_before:]` are the new messages."""
        full = self.codec.render(chat, add_generation_prompt=True)
        if full.startswith(self.text):
            return full[len(self.text) :]
        self.mismatches += 1
        return self.codec.delta(chat[n_before:], closed)


def _action(
    codec: ChatCodec, completion: Completion, stop_ids: Sequence[int], parser: Any
) -> tuple[Message, Message]:
    """The completion as the template sees it (raw text) and as the environment sees it (the
    answer without its reasoning block, with its parsed tool calls)."""
    content = codec.content_of(completion, stop_ids)
    reasoning, answer = codec.fmt.split_reasoning(content)
    calls = parser.parse(answer) if parser is not None else ()
    return Message("assistant", content), Message(
        "assistant", answer, tool_calls=calls, reasoning=reasoning
    )


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
    chat: ChatFormat | None = None,
) -> Trajectory:
    """Run one episode of `env` on `task` and record it as token segments.

    Args:
        env: an `Environment` (or `EnvMix`).
        task: the task to play.
        sampler: samples one completion per turn (`params.n` is ignored: repeat the task for a
            group).
        tokenizer: a tokenizer with a chat template (Hugging Face API).
        params: sampling parameters; `max_new_tokens` caps each turn. With a seed, turn k samples
            with `derive_seed(seed, k)` (`run_episodes` first derives one seed per episode). The
            chat format's end-of-turn ids are added to `stop_token_ids`.
        max_turns: assistant turns allowed; None means the environment's `max_turns`.
        max_tokens: cap on the whole trajectory's length (prompt, environment and sampled tokens).
        adapter: the adapter name passed to the sampler.
        tool_parser: the tool-call syntax; None takes the chat format's.
        chat: the model's chat format; None takes the one attached to the tokenizer
            (`burnish.models.chat.chat_format_of`).

    Returns:
        The trajectory; `info` holds `turns`, `tool_calls`, `step_rewards`,
        `template_mismatches` and `sampled_tokens`.

    One function on purpose: the episode is a state machine over one recorder (its token
    segments, budget and messages), and every branch that ends it must be read beside the others.
    """
    fmt = chat if chat is not None else chat_format_of(tokenizer)
    tools = _resolve(env, task, "tool_schemas", ())
    limit = max_turns if max_turns is not None else _resolve(env, task, "max_turns", 1)
    parser = (tool_parser or fmt.tool_parser) if tools else None
    rec = _Recorder(ChatCodec(tokenizer, tools, fmt))
    stop_ids = tuple(sorted(set(params.stop_token_ids) | set(fmt.end_token_ids)))
    params = dataclasses.replace(params, n=1, stop_token_ids=stop_ids)
    messages: list[Message] = []  # as the environment sees them
    chat_messages: list[Message] = []  # as the template renders them (raw assistant text)
    state: Any = None
    turns = n_calls = 0
    rewards: list[float | None] = []
    error: str | None = None
    stop = StopReason.MAX_TURNS
    try:
        messages = list(await env.reset(task))
        chat_messages = list(messages)
        rec.add_text(rec.codec.render(messages, add_generation_prompt=True))
    except Exception as e:  # the environment's (or its prompt's) failure: recorded
        error, stop, limit = f"{type(e).__name__}: {e}", StopReason.ERROR, 0
    while turns < limit:
        budget = max_tokens - rec.num_tokens
        if budget <= 0:
            stop = StopReason.LENGTH
            break
        try:
            completion = await _sample_turn(rec, sampler, params, budget, turns, adapter)
        except BaseException:  # a sampler failure propagates; the episode's resources close
            await _close(env, task, state)
            raise
        turns += 1
        raw, action = _action(rec.codec, completion, stop_ids, parser)
        messages.append(action)
        chat_messages.append(raw)
        n_calls += len(action.tool_calls)
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
        messages += result.observation
        n_before = len(chat_messages)
        chat_messages += result.observation
        if result.done:
            stop = StopReason.DONE
            break
        if turns >= limit:
            break
        try:
            closed = rec.codec.ends_turn(completion, stop_ids)
            suffix = rec.observation_suffix(chat_messages, n_before, closed)
        except Exception as e:  # the template cannot render this conversation at all
            error, stop = f"chat template: {type(e).__name__}: {e}", StopReason.ERROR
            break
        if rec.num_tokens + len(rec.codec.encode(suffix)) >= max_tokens:
            stop = StopReason.LENGTH  # no room left to sample the next turn
            break
        rec.add_text(suffix)
    if (failed := await _close(env, task, state)) and error is None:
        error, stop = failed, StopReason.ERROR
    info = {"turns": turns, "tool_calls": n_calls, "step_rewards": rewards}
    return _trajectory(task, rec, messages, stop, error, info)


async def _close(env: Any, task: Task, state: Any) -> str | None:
    """Call the environment's optional `close(task, state)` once the episode is over (whatever
    ended it): an environment that holds a resource per episode (a server session) frees it.
    Returns the error text when closing failed."""
    close = _resolve(env, task, "close", None)
    if close is None:
        return None
    try:
        await close(task, state)
    except Exception as e:  # the environment's failure: the episode records it
        return f"close: {type(e).__name__}: {e}"
    return None


async def _sample_turn(rec, sampler, params, budget: int, turn: int, adapter) -> Any:
    """Sample turn `turn` (its own derived seed, at most `budget` tokens) and record it."""
    turn_params = dataclasses.replace(
        params,
        max_new_tokens=min(params.max_new_tokens, budget),
        seed=None if params.seed is None else derive_seed(params.seed, turn),
    )
    completions = await sampler.sample([rec.tokens()], turn_params, adapter)
    if len(completions) != 1:
        raise RuntimeError(f"sampler returned {len(completions)} completions for 1 prompt")
    rec.add_sampled(completions[0])
    return completions[0]


def _trajectory(task, rec, messages, stop, error, info) -> Trajectory:
    """The episode's record: the recorder's segments, the conversation and how it ended."""
    return Trajectory(
        task=task,
        segments=tuple(rec.segments),
        messages=tuple(messages),
        stop_reason=stop,
        turns=info["turns"],
        error=error,
        info={
            **info,
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
    chat: ChatFormat | None = None,
    first_index: int = 0,
) -> list[Trajectory]:
    """Run many episodes concurrently (at most `concurrency` at a time), in task order.

    Args:
        env_or_envs: one environment for all tasks, a sequence aligned with `tasks`, or a
            mapping from environment name to environment (looked up by `Task.env`).
        tasks: the tasks; repeat a task to sample a group for it.
        concurrency: episodes in flight at once; their sampler calls overlap, so a batching
            sampler sees them as one batch.
        chat: the model's chat format (None: the tokenizer's, see `run_episode`).
        first_index: the seed index of the first task: episode i samples with
            `derive_seed(params.seed, first_index + i)`, so a slice of a batch run elsewhere
            (a Ray rollout worker) samples what the whole batch would have.

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
        seed = None if params.seed is None else derive_seed(params.seed, first_index + i)
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
                chat=chat,
            )

    futures = [asyncio.ensure_future(one(i, t)) for i, t in enumerate(tasks)]
    try:
        return list(await asyncio.gather(*futures))
    except BaseException:
        for f in futures:
            f.cancel()
        raise
