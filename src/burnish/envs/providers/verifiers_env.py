"""`verifiers/NAME`: an installed verifiers environment (PrimeIntellect's `verifiers` v1).

`NAME` is a taskset id as verifiers resolves it: an installed package (what an Environments Hub
install gives) or an importable module exporting a `Taskset` subclass in `__all__`, and
optionally an `Env` subclass that drives a multi-turn episode. Any field of the taskset's config
is a keyword argument.

The mapping onto burnish:
- tasks: the taskset's tasks; a task's split is a stable hash of its prompt (of its key when
  the env opens the conversation itself), so tasks that look the same share a split
  (`test_fraction` of them are test tasks); a finite taskset is shuffled by the seed, an infinite one streams in order. The
  prompt is the task's `system_prompt` and `prompt`; the task's data rides in `Task.info`
  (JSON) and is rebuilt into the verifiers task where needed;
- the episode: burnish owns the loop, and the environment's protocol is replayed against it.
  verifiers' `Env.run(task, agents)` is the control flow of one episode (`SingleAgentEnv`: one
  reply; a game env: `interaction.turn(message)` until the game ends). burnish runs it against
  stand-in agents that answer with the episode's recorded assistant replies; when it asks for
  a reply that has not been sampled yet, its message is the next observation. The state is
  the tuple of replies so far, so `run` must be deterministic given the task and the replies
  (the same requirement verifiers' own resume has); it runs again from the start each turn;
- the reward: the episode is replayed once more with every reply; once the replies run out the
  stand-in agent ends its turns (`terminated`, as a turn limit does in verifiers), `run`
  finishes, the task's `@vf.reward` / `@vf.metric` functions and judges score the trace
  (`Task.score`), then `Env.finalize`. Reward = the trace's weighted sum of rewards;
  components: every reward and metric by name. A reward left unscored, or a `TaskError`
  (a reward function or judge failed), is `Score(None)` (never a 0);
- `validate`: the task's own `Task.validate()` must return True (a task whose `validate`
  returns None has no model-free check and fails validation saying so).

Not mapped: tool servers (`Toolset`s: MCP), harness programs and runtimes (burnish samples the
policy itself), multi-agent envs with more than one seat that needs a model (`user-sim`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import distributions
from typing import Any

from burnish.envs.base import BaseEnv, EnvValidationError, check_split, split_of
from burnish.seeds import seeded_rng
from burnish.types import Message, Score, StepResult, Task, Trajectory

IMPORT_NAME = "verifiers"
PREFIX = "verifiers"


def installed_environments() -> list[str]:
    """Installed distributions that depend on verifiers (Environments Hub packages)."""
    found = set()
    for dist in distributions():
        requires = dist.requires or []
        name = dist.metadata["Name"] or ""
        if name.lower() != "verifiers" and any(
            r.split(";")[0].strip().lower().startswith("verifiers") for r in requires
        ):
            found.add(name)
    return sorted(found)


def task_names() -> None:
    return None  # any importable taskset module, not only installed packages


def summary() -> str:
    envs = installed_environments()
    listed = f": {', '.join(envs)}" if envs else ""
    return f"{len(envs)} installed environment package(s){listed} (verifiers/<taskset id>)"


def factory(task: str) -> Callable[..., VerifiersEnv]:
    from verifiers.v1.utils.loaders import taskset_config_type

    try:
        fields = [f for f in taskset_config_type(task).model_fields if f != "id"]
    except (ModuleNotFoundError, TypeError, AttributeError, ValueError) as e:
        from burnish.envs.registry import UnknownEnvironmentError

        raise UnknownEnvironmentError(f"environment {PREFIX + '/' + task!r}: {e}") from e
    build = functools.partial(VerifiersEnv, task)
    own = [
        p
        for p in inspect.signature(VerifiersEnv).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    extra = [inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY) for f in fields]
    build.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    return build


def run_sync(make: Callable[[], Any]) -> Any:
    """Run the coroutine `make()` to completion from synchronous code, also from inside a
    running event loop (then in a worker thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class NeedReply(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """The replayed episode asks for a reply that was not sampled yet; carries its messages.

    A BaseException, so an environment's `except Exception` cannot swallow it."""

    def __init__(self, messages: list[Message]) -> None:
        super().__init__("need reply")
        self.messages = messages


class EpisodeReplay:
    """One replay of an Env's `run` against recorded replies (see the module docstring)."""

    def __init__(self, replies: Sequence[str], scoring: bool) -> None:
        self.replies, self.used, self.scoring = list(replies), 0, scoring
        self.played: list[tuple[Any, Any]] = []  # (verifiers task, trace) of each seat run

    def reply(self, messages: list[Message]) -> str | None:
        """The next recorded reply; out of replies: None when scoring (the agent ends its
        turns), else `NeedReply` with the messages the reply would answer."""
        if self.used < len(self.replies):
            self.used += 1
            return self.replies[self.used - 1]
        if self.scoring:
            return None
        raise NeedReply(messages)


def _to_burnish(message: Any) -> Message:
    from verifiers.v1.types import content_text

    if isinstance(message, dict):
        return Message(message.get("role", "user"), str(message.get("content") or ""))
    return Message(message.role, content_text(message.content) or "")


def _vf_message(message: Message) -> Any:
    from verifiers.v1.types import AssistantMessage, SystemMessage, UserMessage

    kind = {"system": SystemMessage, "assistant": AssistantMessage}.get(message.role, UserMessage)
    return kind(content=message.content)


def prompt_messages(data: Any) -> list[Message]:
    """A verifiers task's opening messages as burnish messages."""
    out = [Message("system", data.system_prompt)] if data.system_prompt else []
    if isinstance(data.prompt, str):
        out.append(Message("user", data.prompt))
    elif data.prompt is not None:
        out += [_to_burnish(m) for m in data.prompt]
    return out


class _Trace:
    """Builds the verifiers `Trace` of one seat's run from burnish messages."""

    def __init__(self, task: Any, seat: str) -> None:
        from verifiers.v1 import AgentConfig
        from verifiers.v1.trace import AgentInfo, Trace, TraceTask

        info = TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash)
        self.trace = Trace(task=info, agent=AgentInfo(config=AgentConfig(), name=seat))

    def add(self, message: Message, sampled: bool = False) -> None:
        from verifiers.v1.graph import MessageNode

        parent = len(self.trace.nodes) - 1 if self.trace.nodes else None
        node = MessageNode(parent=parent, message=_vf_message(message), sampled=sampled)
        self.trace.nodes.append(node)


class _Interaction:
    """What `Agent.interaction(task)` yields: `turn(message)` answers with the next reply."""

    def __init__(self, replay: EpisodeReplay, task: Any, seat: str) -> None:
        self.replay, self.task = replay, task
        self.builder = _Trace(task, seat)
        self.opened = False
        self.over = False
        for m in prompt_messages(task.data):
            self.builder.add(m)

    @property
    def trace(self) -> Any:
        return self.builder.trace

    async def turn(self, message: Any = None) -> Any:
        from verifiers.v1.agent import Segment
        from verifiers.v1.types import AssistantMessage

        if self.over:
            raise RuntimeError("the exchange is over (the run ended); read interaction.trace")
        sent = [] if message is None else [message] if isinstance(message, str) else message
        sent = [Message("user", m) if isinstance(m, str) else _to_burnish(m) for m in sent]
        for m in sent:
            self.builder.add(m)
        reply = self.replay.reply(sent)
        if reply is None:
            self.over = True
            self.trace.stop("max_turns")
            return Segment(messages=[], terminated=True)
        self.builder.add(Message("assistant", reply), sampled=True)
        return Segment(messages=[AssistantMessage(content=reply)])

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("burnish does not map verifiers' send/steer (background turns)")

    steer = send


class _Seat:
    """A stand-in `Agent` for one seat of the env: the policy, answering from the replay."""

    def __init__(self, name: str, replay: EpisodeReplay) -> None:
        self.name, self.replay, self.trainable = name, replay, True

    def _check(self) -> None:
        if not self.trainable:  # env.setup() marked it as a model of the world, not the policy
            raise NotImplementedError(
                f"verifiers seat {self.name!r} is not the policy: burnish plays one seat and "
                "cannot run a second model (multi-agent envs such as user-sim)"
            )

    async def _finish(self, task: Any, trace: Any) -> None:
        trace.stop("agent_completed")
        trace.is_completed = trace.ok = True
        if self.replay.scoring:
            await task.score(trace)
        self.replay.played.append((task, trace))

    async def run(self, task: Any, **kwargs: Any) -> Any:
        self._check()
        inter = _Interaction(self.replay, task, self.name)
        await inter.turn()
        await self._finish(task, inter.trace)
        return inter.trace

    @asynccontextmanager
    async def interaction(self, task: Any, **kwargs: Any):
        self._check()
        inter = _Interaction(self.replay, task, self.name)
        yield inter  # a NeedReply raised inside propagates: nothing to finish
        await self._finish(task, inter.trace)


class _Agents:
    """What `Env.run` receives: the seats by name (`agents.player`)."""

    def __init__(self, seats: Sequence[str], replay: EpisodeReplay) -> None:
        self._seats = {n: _Seat(n, replay) for n in seats}

    def __getattr__(self, name: str) -> _Seat:
        seats = self.__dict__.get("_seats") or {}
        if name not in seats:
            raise AttributeError(f"no agent {name!r}; this config declares {sorted(seats)}")
        return seats[name]


class VerifiersEnv(BaseEnv):
    """One verifiers environment; see the module docstring."""

    validation_check = "each task's own verifiers Task.validate() accepts its ground truth"

    def __init__(
        self,
        taskset_id: str,
        *,
        env_id: str = "",
        test_fraction: float = 0.2,
        max_turns: int = 8,
        max_reward: float = 1.0,
        **taskset: Any,
    ) -> None:
        from verifiers.v1.configs.agent import agent_config_fields
        from verifiers.v1.utils.loaders import load_environment, resolve_env_config

        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.name = f"{PREFIX}/{taskset_id}"
        self.test_fraction, self.max_turns, self.max_reward = test_fraction, max_turns, max_reward
        config = resolve_env_config({"id": env_id, "taskset": {"id": taskset_id, **taskset}})
        self.env = load_environment(config)
        self.taskset = self.env.taskset
        self.task_cls = type(self.taskset).task_type()
        self.seats = list(agent_config_fields(self.env.config))
        for source in (type(self.taskset).toolsets(self.taskset.config),
                       self.task_cls.toolsets(self.taskset.config.task)):  # fmt: skip
            if source:
                raise NotImplementedError(f"{self.name}: verifiers tool servers are not mapped")

    # ------------------------------------------------------------------ tasks

    def _vf_task(self, task: Task) -> Any:
        data = self.task_cls.data_type().model_validate(task.info["data"])
        return self.task_cls(data, self.taskset.config.task)

    def _stream(self, split: str, seed: int) -> Iterator[Any]:
        tasks: Iterator[Any] = iter(self.taskset)
        if self.taskset.bounded:
            mine = [t for t in tasks if self._split(t) == split]
            seeded_rng(self.name, split, seed).shuffle(mine)
            return iter(mine)
        return (t for t in tasks if self._split(t) == split)

    def _split(self, vf_task: Any) -> str:
        """By the prompt, not the task key: tasks that look the same share a split."""
        prompt = [(m.role, m.content) for m in prompt_messages(vf_task.data)]
        key = repr(prompt) if vf_task.data.prompt is not None else vf_task.key
        return split_of(f"{self.name}/{key}", self.test_fraction)

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        check_split(split)
        for vf_task in self._stream(split, seed):
            prompt = prompt_messages(vf_task.data)
            info = {"data": vf_task.data.model_dump(mode="json"), "key": vf_task.key}
            task = Task(f"{split}-{vf_task.data.idx}", (), getattr(vf_task.data, "answer", None),
                        self.name, info)  # fmt: skip
            if vf_task.data.prompt is None:  # the env opens the conversation itself
                prompt += run_sync(lambda t=task: self._next(t, ()))[0]
            yield Task(task.id, tuple(prompt), task.answer, self.name, info)

    # ------------------------------------------------------------------ the episode

    async def _replay(self, task: Task, replies: Sequence[str], scoring: bool) -> EpisodeReplay:
        replay = EpisodeReplay(replies, scoring)
        agents = _Agents(self.seats, replay)
        vf_task = self._vf_task(task)
        await self.env.setup(agents)
        await self.env.run(vf_task, agents)
        if scoring:
            from verifiers.v1.episode import EnvInfo, Episode
            from verifiers.v1.trace import TraceTask

            info = TraceTask(type=type(vf_task).__name__, data=vf_task.data, key=vf_task.key)
            episode = Episode(env=EnvInfo(id=self.env.config.env_id), task=info,
                              traces=[t for _, t in replay.played])  # fmt: skip
            await self.env.finalize(vf_task, episode)
        return replay

    async def _next(self, task: Task, replies: Sequence[str]) -> tuple[list[Message], bool]:
        """The messages `run` sends after `replies`, and whether the episode is over."""
        try:
            await self._replay(task, replies, scoring=False)
        except NeedReply as need:
            return need.messages, False
        return [], True

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        replies = (*(state or ()), action.content)
        messages, done = await self._next(task, replies)
        return StepResult(tuple(messages), done, replies)

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        from verifiers.v1.errors import TaskError

        replies = [
            m.content for m in trajectory.messages[len(task.prompt) :] if m.role == "assistant"
        ]
        try:
            replay = run_sync(lambda: self._replay(task, replies, scoring=True))
        except TaskError as e:  # a reward function or judge failed: unscorable, never 0
            return Score(None, info={"error": f"TaskError: {e}"})
        if not replay.played:
            return Score(None, info={"error": "the episode ran no seat"})
        trace = replay.played[-1][1]
        rewards = {k: r.score if r is not None else None for k, r in trace.rewards.items()}
        if any(v is None for v in rewards.values()):
            unscored = sorted(k for k, v in rewards.items() if v is None)
            return Score(None, info={"error": f"rewards not scored: {unscored}"})
        components = {**{k: float(v) for k, v in trace.metrics.items() if v is not None},
                      **{k: float(v) for k, v in rewards.items()}}  # fmt: skip
        return Score(float(trace.reward), components)

    def validate(self, task: Task) -> None:
        """Raise `EnvValidationError` unless the task's own `validate()` returns True."""
        result = run_sync(lambda: self._vf_task(task).validate(None))
        if result is None:
            raise EnvValidationError(
                f"{self.name} task {task.id!r}: its verifiers Task.validate() returns None "
                "(no model-free check of the ground truth)"
            )
        if not result:
            raise EnvValidationError(f"{self.name} task {task.id!r}: Task.validate() is False")
