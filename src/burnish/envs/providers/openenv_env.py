"""`openenv/URL`: an environment served by an OpenEnv server, played over its client.

An OpenEnv server (Meta's OpenEnv: `openenv.core.env_server.create_app` behind uvicorn) holds
the environment; burnish plays each episode in its own session through OpenEnv's client
(`GenericEnvClient`: `reset(seed)`, then `step(action)` until `done`, over the server's `/ws`
endpoint). The mapping:

- a task is a reset seed; its prompt is the observation of `POST /reset` with that seed (one
  request when the task is drawn). Train and test seeds are disjoint (a seed's split is a stable
  hash of it). GRPO needs every episode of a group to start from the same observation, so the
  server's reset must be deterministic under a seed: an episode whose session starts
  elsewhere fails (`ERROR`), and `validate` checks exactly this (OpenEnv environments carry no
  gold answers to check);
- the assistant's reply is the action's text field (`action_field`, by default the action
  schema's only string field, from `GET /schema`); the observation shown to the model is
  `observation_field` of the observation (by default its only string field, else the whole
  observation as JSON) as a user message;
- the episode's reward is the sum of the step rewards (None counts 0); components `return`
  and `steps`. `max_reward` (default 1.0) is what pass@k compares against;
- sessions: at most `max_sessions` open at once (the server's own limit,
  `max_concurrent_envs`, is 1 unless it raises it); a session is closed when the episode ends
  however it ends (`close`).

The URL is where every transcript goes: the server receives the model's replies and its
observations are put in front of the model. Loopback URLs are accepted; any other host needs
`allow_remote = true` (docs/security.md).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from burnish.envs.base import BaseEnv, EnvValidationError, check_split, split_of
from burnish.envs.registry import UnknownEnvironmentError
from burnish.seeds import seeded_rng
from burnish.types import Message, Score, StepResult, Task, Trajectory

IMPORT_NAME = "openenv"
PREFIX = "openenv"


def task_names() -> None:
    return None  # any server URL


def summary() -> str:
    return "any OpenEnv server (openenv/http://127.0.0.1:PORT; other hosts need allow_remote)"


def factory(task: str) -> Callable[..., OpenEnvEnv]:
    url = urlparse(task)
    if url.scheme not in ("http", "https", "ws", "wss") or not url.hostname:
        raise UnknownEnvironmentError(
            f"environment {PREFIX + '/' + task!r}: {task!r} is not a server URL (http://HOST:PORT)"
        )
    return functools.partial(OpenEnvEnv, task)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def observation_text(observation: dict[str, Any], field_name: str | None) -> str:
    """What the model is shown of an observation (see the module docstring)."""
    if field_name is not None:
        if field_name not in observation:
            raise KeyError(f"observation has no field {field_name!r}: {sorted(observation)}")
        return str(observation[field_name])
    texts = [v for v in observation.values() if isinstance(v, str)]
    if len(texts) == 1:
        return texts[0]
    return json.dumps(observation, sort_keys=True, default=str)


@dataclass
class _Session:
    """One open OpenEnv session (a websocket client) and the slot it holds."""

    client: Any
    slot: asyncio.Semaphore
    open: bool = field(default=True)

    async def close(self) -> None:
        if self.open:
            self.open = False
            try:
                await self.client.disconnect()
            finally:
                self.slot.release()


class OpenEnvEnv(BaseEnv):
    """Episodes of one OpenEnv server; see the module docstring."""

    validation_check = "a seeded reset reproduces the task's prompt (OpenEnv has no gold answers)"

    def __init__(
        self,
        url: str,
        *,
        action_field: str | None = None,
        observation_field: str | None = None,
        max_sessions: int = 1,
        max_turns: int = 8,
        max_reward: float = 1.0,
        timeout_s: float = 60.0,
        allow_remote: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = f"{PREFIX}/{url}"
        host = urlparse(self.url).hostname or ""
        if not is_loopback(host) and not allow_remote:
            raise ValueError(
                f"{self.name}: {host!r} is not a loopback address. The server receives every "
                "transcript (the model's replies) and its observations are shown to the model; "
                "set kwargs allow_remote = true to use it (docs/security.md)"
            )
        if max_sessions < 1 or max_turns < 1:
            raise ValueError(f"{self.name}: max_sessions and max_turns must be >= 1")
        self.observation_field, self._action_field = observation_field, action_field
        self.max_sessions, self.max_turns, self.max_reward = max_sessions, max_turns, max_reward
        self.timeout_s = timeout_s
        self._slots: dict[Any, asyncio.Semaphore] = {}  # one per event loop

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)

    def _get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        try:
            r = httpx.request(method, self.http_url + path, json=body, timeout=self.timeout_s)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise RuntimeError(f"{self.name}: {method} {path} failed: {e}") from e

    @functools.cached_property
    def action_field(self) -> str:
        """The action field that receives the reply (`action_field`, or the only string one)."""
        if self._action_field is not None:
            return self._action_field
        props = self._get("/schema").get("action", {}).get("properties", {})
        texts = [n for n, p in props.items() if n != "metadata" and p.get("type") == "string"]
        if len(texts) != 1:
            raise ValueError(
                f"{self.name}: the action schema has {len(texts)} string fields ({texts}; all: "
                f"{sorted(props)}); name the one for the reply with kwargs action_field"
            )
        return texts[0]

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        check_split(split)
        rng = seeded_rng(PREFIX, self.url, split, seed)
        seen: set[int] = set()
        while True:
            reset_seed = rng.randrange(2**31)
            if reset_seed in seen or split_of(f"{self.name}/{reset_seed}") != split:
                continue
            seen.add(reset_seed)
            first = self._request("POST", "/reset", {"seed": reset_seed})
            prompt = (
                Message("user", observation_text(first["observation"], self.observation_field)),
            )
            yield Task(f"{split}-{reset_seed}", prompt, None, self.name, {"seed": reset_seed})

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots = {loop: asyncio.Semaphore(self.max_sessions)}  # an old loop is done
        return self._slots[loop]

    async def _open(self, task: Task) -> _Session:
        """A session reset to the task's seed; raises unless it starts at the task's prompt."""
        from openenv import GenericEnvClient

        slot = self._slot()
        await slot.acquire()
        session = _Session(
            GenericEnvClient(base_url=self.url, message_timeout_s=self.timeout_s), slot
        )
        try:
            result = await session.client.reset(seed=task.info["seed"])
            text = observation_text(result.observation, self.observation_field)
            if text != task.prompt[-1].content:
                raise RuntimeError(
                    f"{self.name}: reset with seed {task.info['seed']} gave {text[:80]!r}, not the "
                    f"task's prompt {task.prompt[-1].content[:80]!r}: the server's reset is not "
                    "deterministic under a seed"
                )
        except BaseException:
            await session.close()
            raise
        return session

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        session = state if isinstance(state, _Session) else await self._open(task)
        try:
            result = await session.client.step({self.action_field: action.content})
            text = observation_text(result.observation, self.observation_field)
        except BaseException:  # the runner's close only sees sessions handed back in a state
            await session.close()
            raise
        if result.done:
            await session.close()
        reward = None if result.reward is None else float(result.reward)
        return StepResult((Message("user", text),), bool(result.done), session, reward)

    async def close(self, task: Task, state: Any) -> None:
        if isinstance(state, _Session):
            await state.close()

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        rewards = [r or 0.0 for r in trajectory.info.get("step_rewards", [])]
        total = float(sum(rewards))
        return Score(total, {"return": total, "steps": float(len(rewards))})

    def validate(self, task: Task) -> None:
        """Raise `EnvValidationError` unless a session reset to the task's seed starts at the
        task's prompt (what a group of episodes of one task needs)."""

        async def check() -> None:
            session = await self._open(task)
            await session.close()

        try:
            asyncio.run(check())
        except RuntimeError as e:
            raise EnvValidationError(str(e)) from e
