"""`ScriptedSampler`: a `Sampler` whose answers come from a Python function.

For testing environments, scorers and the episode loop without a model: the policy function
receives the decoded prompt (the whole conversation so far, as the chat template rendered it)
and returns the assistant text; the sampler encodes it, appends the EOS token and returns
made-up logprobs. `teacher_policy` plays an environment's gold teacher.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any

from burnish.envs.tool_calls import COMPACT
from burnish.rollout.base import Completion, SamplingParams
from burnish.types import Message, Task


class ScriptedSampler:
    """Answers each prompt with `policy(decoded_prompt)`, then EOS.

    Completions longer than `params.max_new_tokens` are cut there (finish_reason "length").
    `calls`, `max_in_flight` and `prompts` record how it was used.
    """

    def __init__(
        self, tokenizer: Any, policy: Callable[[str], str], *, delay_s: float = 0.0
    ) -> None:
        self.tokenizer = tokenizer
        self.policy = policy
        self.delay_s = delay_s
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompts: list[list[int]] = []

    async def sample(
        self, prompts: list[list[int]], params: SamplingParams, adapter: str | None = None
    ) -> list[Completion]:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            out = []
            for i, prompt in enumerate(prompts):
                self.prompts.append(list(prompt))
                text = self.policy(self.tokenizer.decode(prompt, skip_special_tokens=False))
                ids = [*self.tokenizer.encode(text, add_special_tokens=False)]
                ids.append(self.tokenizer.eos_token_id)
                finish = "stop"
                if len(ids) > params.max_new_tokens:
                    ids, finish = ids[: params.max_new_tokens], "length"
                logprobs = tuple(-0.01 * (k + 1) for k in range(len(ids)))
                for _ in range(params.n):
                    out.append(Completion(i, tuple(ids), logprobs, finish))  # type: ignore[arg-type]
            return out
        finally:
            self.in_flight -= 1

    async def sync(self, policy: Any) -> None:
        return None


_CHAR_MESSAGE = re.compile(r"<\|(system|user|assistant|tool)\|>(.*?)<\|end\|>", re.DOTALL)


def parse_char_chat(text: str) -> list[Message]:
    """The complete messages of a conversation rendered by the burnish character template."""
    return [Message(role, content) for role, content in _CHAR_MESSAGE.findall(text)]


def teacher_policy(env: Any, tasks: Iterable[Task]) -> Callable[[str], str]:
    """A policy that plays `env.teacher` on conversations in the burnish character template.

    The task of a prompt is found by its prompt messages; tool calls in earlier assistant turns
    are parsed again with the compact syntax so the teacher sees what the environment saw.
    """
    by_prompt = {tuple((m.role, m.content) for m in t.prompt): t for t in tasks}

    def policy(prompt: str) -> str:
        messages = parse_char_chat(prompt)
        for n in range(1, len(messages) + 1):
            task = by_prompt.get(tuple((m.role, m.content) for m in messages[:n]))
            if task is not None:
                break
        else:
            raise KeyError(f"no task has the prompt of {prompt[:80]!r}")
        messages = [
            Message(m.role, m.content, tool_calls=COMPACT.parse(m.content))
            if m.role == "assistant"
            else m
            for m in messages
        ]
        return env.teacher(task, messages).content

    return policy
