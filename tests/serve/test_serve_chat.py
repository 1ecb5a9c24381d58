"""`burnish serve` /v1/chat/completions: template rendering, tool calls, logprobs, streaming."""

import json

import httpx
import openai
import pytest

from burnish.models.chat import render

BASE = "burnish-tiny"
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}


def test_chat_renders_the_template_and_equals_a_completion_of_the_rendered_prompt(served):
    tok = served.state.tokenizer
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
    ]
    client = served.client()
    r = client.chat.completions.create(
        model="a1", messages=messages, max_tokens=10, temperature=0,
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    flat = [messages[0], {"role": "user", "content": "What is 2+2?"}]
    prompt = tok.encode(render(tok, flat, True), add_special_tokens=False)
    assert r.model_extra["prompt_token_ids"] == prompt
    same = client.completions.create(
        model="a1", prompt=prompt, max_tokens=10, temperature=0,
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.model_extra["token_ids"] == same.choices[0].model_extra["token_ids"]
    assert choice.message.content == same.choices[0].text and choice.message.role == "assistant"
    assert choice.finish_reason == same.choices[0].finish_reason
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens == len(prompt)


def test_chat_logprobs_have_the_chat_shape(served):
    r = served.client().chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "hi"}], max_tokens=6, seed=1,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for item in content:
        assert item.bytes == list(item.token.encode()) and item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].token == item.token  # vLLM lists the sampled token first
        assert item.top_logprobs[0].logprob == item.logprob
        rest = [t.logprob for t in item.top_logprobs[1:]]
        assert rest == sorted(rest, reverse=True)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        served.client().chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": "hi"}], max_tokens=2, top_logprobs=2
        )


def test_tool_calls_are_parsed_in_the_models_compact_syntax(served):
    """burnish-tiny answers calculator questions with `<call>calculator(...)</call>`."""
    client = served.client()
    messages = [{"role": "user", "content": "13*28+24=?"}]
    r = client.chat.completions.create(
        model=BASE, messages=messages, tools=[CALCULATOR], max_tokens=40, temperature=0
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "13*28+24"}
    assert choice.message.content is None
    # the next turn: the assistant's call and the tool's answer, rendered in the model's syntax
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "388"},
    ]
    r2 = client.chat.completions.create(
        model=BASE, messages=messages, tools=[CALCULATOR], max_tokens=10, temperature=0,
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    tok = served.state.tokenizer
    prompt = tok.decode(r2.model_extra["prompt_token_ids"])
    assert "<|assistant|><call>calculator(13*28+24)</call><|end|><|tool|>388<|end|>" in prompt
    assert r2.choices[0].message.tool_calls == [] and r2.choices[0].finish_reason == "stop"
    without = client.chat.completions.create(
        model=BASE, messages=messages[:1], max_tokens=40, temperature=0
    )
    assert without.choices[0].message.tool_calls == []  # no tools asked for: plain text
    assert without.choices[0].message.content == "<call>calculator(13*28+24)</call>"


def test_unsupported_tool_choice_is_refused(served):
    r = httpx.post(
        served.v1 + "/chat/completions",
        json={"model": BASE, "messages": [{"role": "user", "content": "x"}],
              "tools": [CALCULATOR], "tool_choice": "required"},
        timeout=30,
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


def test_streamed_chat_sends_role_then_content_then_finish_then_done(served):
    body = {
        "model": "a2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8,
        "seed": 3, "n": 2, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    with httpx.stream("POST", served.v1 + "/chat/completions", json=body, timeout=30) as r:
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""}
    ] * 2
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    texts, finish = {0: "", 1: ""}, {}
    for c in chunks[2:-1]:
        choice = c["choices"][0]
        texts[choice["index"]] += choice["delta"].get("content", "")
        if choice["finish_reason"]:
            finish[choice["index"]] = choice["finish_reason"]
    whole = served.client().chat.completions.create(
        model="a2", messages=body["messages"], max_tokens=8, seed=3, n=2
    )
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finish == {c.index: c.finish_reason for c in whole.choices}


def test_streamed_tool_call_arrives_whole_with_the_finish(served):
    stream = served.client().chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "16*68+56=?"}], tools=[CALCULATOR],
        max_tokens=40, temperature=0, stream=True,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1].choices[0]
    assert last.finish_reason == "tool_calls"
    (call,) = last.delta.tool_calls
    assert call.function.name == "calculator" and call.index == 0
    assert json.loads(call.function.arguments) == {"expression": "16*68+56"}
    assert all(not c.choices[0].delta.content for c in chunks)  # the call text is not streamed


def test_a_role_the_template_refuses_is_a_400(served):
    r = httpx.post(
        served.v1 + "/chat/completions",
        json={"model": BASE, "messages": [{"role": "wizard", "content": "x"}]},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert "unknown role wizard" in r.json()["error"]["message"]
