"""Shared helpers of the judge tests."""

from __future__ import annotations

from burnish.judges.config import JudgeConfig
from burnish.judges.scripted_rules import MODEL_ID
from burnish.types import Message, Task


def make_config(server, **kw) -> JudgeConfig:
    defaults = {
        "model": MODEL_ID,
        "api_key_env": None,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return JudgeConfig(server.base_url, **{**defaults, **kw})


def keyword_task(words=("apple", "river", "lamp"), task_id="t1") -> Task:
    prompt = f"Write two sentences that use all of these words: {', '.join(words)}."
    return Task(task_id, (Message("user", prompt),), env="keywords", info={"keywords": list(words)})


GOOD = "I left an apple by the river. At dusk the lamp came on."
PARTIAL = "I left an apple by the river at dusk."
NONE = "Nothing to see here."
