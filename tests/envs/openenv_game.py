"""A small OpenEnv environment and a loopback server for it (the tests of `openenv/URL`).

`HotColdEnvironment`: find a secret number from 1 to 8 (drawn from the reset seed); each guess
gets "higher", "lower" or "correct"; reward 1.0 on the correct guess, the episode ends there or
after 4 guesses. Served with OpenEnv's own `create_fastapi_app` under uvicorn in a thread on a
free 127.0.0.1 port (no Docker).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any

import uvicorn
from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app


class GuessAction(Action):
    guess: str


class HintObservation(Observation):
    message: str


class HotColdEnvironment(Environment[GuessAction, HintObservation, State]):
    SUPPORTS_CONCURRENT_SESSIONS = True
    MAX_GUESSES = 4

    def __init__(self) -> None:
        super().__init__()
        self._secret = 0
        self._state = State(episode_id="", step_count=0)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kw: Any):
        self._secret = random.Random(seed).randint(1, 8)
        self._state = State(episode_id=episode_id or "", step_count=0)
        return HintObservation(message=f"Game {seed}: guess my number from 1 to 8.")

    def step(self, action: GuessAction, timeout_s: float | None = None, **kw: Any):
        self._state.step_count += 1
        text = action.guess.strip()
        if text == str(self._secret):
            return HintObservation(message="correct", done=True, reward=1.0)
        hint = "higher" if text.isdigit() and int(text) < self._secret else "lower"
        done = self._state.step_count >= self.MAX_GUESSES
        return HintObservation(message=hint, done=done, reward=0.0)

    @property
    def state(self) -> State:
        return self._state


def secret_of(seed: int) -> int:
    return random.Random(seed).randint(1, 8)


@contextmanager
def serving(max_sessions: int = 4):
    """The game's OpenEnv server on a free 127.0.0.1 port; yields its URL, stops on exit."""
    app = create_fastapi_app(HotColdEnvironment, GuessAction, HintObservation, max_sessions)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "OpenEnv server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
