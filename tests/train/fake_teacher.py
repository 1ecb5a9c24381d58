"""A fake OpenAI-compatible teacher server (the vLLM token-id completions dialect) on 127.0.0.1.

Two kinds of request reach `/v1/completions`:

- sampling (`burnish distill`): the completion is looked up by the prompt's token ids in
  `answers` (prompt ids -> completion ids); an unknown prompt gets `fallback`;
- scoring (on-policy distillation, `prompt_logprobs` in the body): the prompt's log-probs are
  computed with `model`, a real tiny model, and returned the way vLLM does (`None` first, then
  one dict per token keyed by the token id string, with a decoy entry for another token).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import torch
import uvicorn
from fastapi import FastAPI

from burnish.models import sequence_logprobs


class FakeTeacher:
    def __init__(self, tokenizer, model=None, answers=None, fallback=()) -> None:
        self.tok = tokenizer
        self.model = model
        self.answers: dict[tuple[int, ...], list[int]] = dict(answers or {})
        self.fallback = list(fallback)
        self.requests: list[dict] = []
        self.sampled_tokens = 0
        self.omit_prompt_logprobs = False
        self.app = FastAPI()
        self.app.post("/v1/completions")(self.completions)

    async def completions(self, body: dict) -> dict:
        self.requests.append(body)
        if "prompt_logprobs" in body:
            return self._scored(body)
        choices = []
        for i in range(body.get("n", 1)):
            ids = self.answers.get(tuple(body["prompt"]), self.fallback)
            self.sampled_tokens += len(ids)
            choices.append(
                {
                    "index": i,
                    "text": self.tok.decode(ids),
                    "token_ids": ids,
                    "logprobs": {"token_logprobs": [-0.25] * len(ids)},
                    "finish_reason": "stop",
                }
            )
        return {"object": "text_completion", "model": body["model"], "choices": choices}

    def _scored(self, body: dict) -> dict:
        prompt = body["prompt"]
        with torch.no_grad():
            logp, _ = sequence_logprobs(self.model, torch.tensor([prompt]))
        entries: list = [None]
        for t in range(1, len(prompt)):
            decoy = (prompt[t] + 1) % len(self.tok)
            entries.append(
                {
                    str(decoy): {"logprob": -99.0, "rank": 2, "decoded_token": "?"},
                    str(prompt[t]): {"logprob": float(logp[0, t]), "rank": 1, "decoded_token": "x"},
                }
            )
        choice = {"index": 0, "text": "", "finish_reason": "length"}
        if not self.omit_prompt_logprobs:
            choice["prompt_logprobs"] = entries
        return {"object": "text_completion", "model": body["model"], "choices": [choice]}


@contextmanager
def serving(fake: FakeTeacher):
    """Run `fake` with uvicorn in a thread on a free 127.0.0.1 port; yields its `/v1` URL and
    stops it on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "fake teacher did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
