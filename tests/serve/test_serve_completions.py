"""`burnish serve` /v1/completions, /v1/models and /health through the official openai client."""

import json

import httpx
import openai
import pytest
import torch

from burnish.models.logprobs import sequence_logprobs

BASE = "burnish-tiny"
ADAPTERS = ("a0", "a1", "a2")


def test_health_is_an_empty_200_and_models_lists_base_and_adapters(served, adapter_root):
    health = httpx.get(served.url + "/health")
    assert health.status_code == 200 and health.content == b""
    cards = {m.id: m for m in served.client().models.list().data}
    base = cards[BASE]
    assert base.object == "model" and base.owned_by == "burnish"
    assert base.model_extra["root"] == BASE and base.model_extra["parent"] is None
    assert base.model_extra["max_model_len"] == 256
    for name in ADAPTERS:
        card = cards[name].model_extra
        assert card["parent"] == BASE and card["root"] == str(adapter_root / name), card
        assert cards[name].owned_by == "burnish"


def test_every_prompt_form_gives_prompt_major_choices(served, local_greedy):
    tok = served.state.tokenizer
    texts = ["12+34=", "7-5="]
    ids = [tok.encode(t) for t in texts]
    client = served.client()
    kw = {
        "model": "a1",
        "max_tokens": 6,
        "temperature": 0,
        "extra_body": {"return_token_ids": True},
    }
    by_text = client.completions.create(prompt=texts, n=2, **kw)
    by_ids = client.completions.create(prompt=ids, n=2, **kw)
    single_text = client.completions.create(prompt=texts[1], **kw)
    single_ids = client.completions.create(prompt=ids[1], **kw)
    assert [c.index for c in by_text.choices] == [0, 1, 2, 3]
    expected = [list(c.token_ids) for c in local_greedy(ids, "a1", 6)]
    got = [c.model_extra["token_ids"] for c in by_ids.choices]
    assert got == [expected[0], expected[0], expected[1], expected[1]], (got, expected)
    assert [c.model_extra["token_ids"] for c in by_text.choices] == got
    assert single_text.choices[0].text == single_ids.choices[0].text == by_ids.choices[2].text
    assert by_ids.choices[0].model_extra["prompt_token_ids"] == ids[0]
    assert by_ids.usage.prompt_tokens == len(ids[0]) + len(ids[1])
    assert by_ids.usage.completion_tokens == sum(len(t) for t in got)
    assert by_ids.usage.total_tokens == by_ids.usage.prompt_tokens + by_ids.usage.completion_tokens
    assert by_ids.model == "a1" and by_ids.object == "text_completion"


def test_logprobs_are_the_sampled_distributions_in_vllm_legacy_shape(served, reference):
    model, tok = reference
    prompt = tok.encode("3+4=")
    r = served.client().completions.create(
        model=BASE, prompt=prompt, max_tokens=8, temperature=1.0, seed=5, logprobs=2,
        extra_body={"return_token_ids": True, "skip_special_tokens": False},
    )  # fmt: skip
    choice = choice_dict(r)
    lp, tokens = choice["logprobs"], choice["token_ids"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(tokens)
    assert lp["tokens"] == [tok.decode([t]) for t in tokens]
    offsets = [0]
    for t in lp["tokens"][:-1]:
        offsets.append(offsets[-1] + len(t))
    assert lp["text_offset"] == offsets
    with model.disable_adapter():  # temperature 1, no truncation: the model's own logprobs
        expected, _ = sequence_logprobs(model, torch.tensor([prompt + tokens]))
    torch.testing.assert_close(
        torch.tensor(lp["token_logprobs"]), expected[0, len(prompt) :], atol=1e-4, rtol=0
    )
    for token_text, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert 2 <= len(top) <= 3 and top[token_text] == logprob, top  # sampled + top 2
        assert max(top.values()) >= logprob


def test_tokens_as_token_ids(served):
    r = served.client().completions.create(
        model="a0", prompt="hi", max_tokens=4, temperature=0, logprobs=0,
        extra_body={"return_tokens_as_token_ids": True, "return_token_ids": True},
    )  # fmt: skip
    choice = choice_dict(r)
    assert choice["logprobs"]["tokens"] == [f"token_id:{t}" for t in choice["token_ids"]]
    assert all(
        list(top) == [t]
        for top, t in zip(choice["logprobs"]["top_logprobs"], choice["logprobs"]["tokens"])
    )


def test_prompt_logprobs_match_the_model_with_ranks_and_alternatives(served, reference):
    model, tok = reference
    prompt = tok.encode("12*7=84")
    r = served.client().completions.create(
        model=BASE, prompt=prompt, max_tokens=1, extra_body={"prompt_logprobs": 2}
    )
    entries = choice_dict(r)["prompt_logprobs"]
    assert entries[0] is None and len(entries) == len(prompt)
    with model.disable_adapter():
        expected, _ = sequence_logprobs(model, torch.tensor([prompt]))
        logits = model(input_ids=torch.tensor([prompt])).logits[0].log_softmax(-1)
    for t in range(1, len(prompt)):
        entry = entries[t]
        own = entry[str(prompt[t])]
        assert abs(own["logprob"] - expected[0, t].item()) < 1e-4
        assert own["rank"] == int((logits[t - 1] >= logits[t - 1, prompt[t]]).sum())
        assert own["decoded_token"] == tok.decode([prompt[t]])
        top2 = logits[t - 1].topk(2).indices.tolist()
        for rank, token in enumerate(top2, 1):
            assert str(token) in entry and (entry[str(token)]["rank"] == rank or token == prompt[t])
        assert len(entry) <= 3


def test_echo_prepends_the_prompt_with_its_logprobs(served):
    r = served.client().completions.create(
        model="a2", prompt="5+5=", max_tokens=3, temperature=0, echo=True, logprobs=1
    )
    choice = choice_dict(r)
    plain = served.client().completions.create(
        model="a2", prompt="5+5=", max_tokens=3, temperature=0
    )
    assert choice["text"] == "5+5=" + plain.choices[0].text
    lp = choice["logprobs"]
    assert lp["tokens"][:4] == list("5+5=") and lp["token_logprobs"][0] is None
    assert all(isinstance(x, float) for x in lp["token_logprobs"][1:]), lp["token_logprobs"]
    only = served.client().completions.create(
        model="a2", prompt="5+5=", max_tokens=0, echo=True, logprobs=0
    )
    assert only.choices[0].text == "5+5=" and only.usage.completion_tokens == 0
    assert only.choices[0].logprobs.token_logprobs[1:] == lp["token_logprobs"][1:4]


def test_stop_strings_and_stop_tokens_follow_vllm(served):
    client = served.client()
    base = client.completions.create(
        model="a0", prompt="hello", max_tokens=12, temperature=0,
        extra_body={"return_token_ids": True, "skip_special_tokens": False},
    )  # fmt: skip
    full, tokens = base.choices[0].text, choice_dict(base)["token_ids"]
    assert len(full) >= 6, full
    stop = full[3:5]
    cut = client.completions.create(
        model="a0", prompt="hello", max_tokens=12, temperature=0, stop=[stop],
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    c = choice_dict(cut)
    assert c["text"] == full[: full.index(stop)] and c["finish_reason"] == "stop"
    assert c["stop_reason"] == stop and c["token_ids"] == tokens[: full.index(stop) + len(stop)]
    kept = client.completions.create(
        model="a0", prompt="hello", max_tokens=12, temperature=0, stop=stop,
        extra_body={"include_stop_str_in_output": True},
    )  # fmt: skip
    assert kept.choices[0].text == full[: full.index(stop) + len(stop)]
    stop_id = tokens[2]
    by_id = client.completions.create(
        model="a0", prompt="hello", max_tokens=12, temperature=0,
        extra_body={"stop_token_ids": [stop_id], "return_token_ids": True},
    )  # fmt: skip
    c = choice_dict(by_id)
    first = tokens.index(stop_id)
    assert c["token_ids"] == tokens[: first + 1] and c["stop_reason"] == stop_id
    assert c["text"] == served.state.tokenizer.decode(tokens[:first], skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_and_each_choice_has_its_own_stream(served):
    client = served.client()
    kw = {"model": "a1", "prompt": "x", "max_tokens": 10, "n": 3, "temperature": 1.0}
    first = [c.text for c in client.completions.create(seed=11, **kw).choices]
    again = [c.text for c in client.completions.create(seed=11, **kw).choices]
    other = [c.text for c in client.completions.create(seed=12, **kw).choices]
    assert first == again and len(set(first)) > 1 and other != first, (first, other)


def test_streamed_completion_equals_the_whole_one(served):
    client = served.client()
    kw = {"model": "a2", "prompt": ["ab", "12+1="], "max_tokens": 10, "seed": 4, "n": 2}
    whole = client.completions.create(**kw)
    texts, finish = {}, {}
    for chunk in client.completions.create(stream=True, **kw):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert finish == {c.index: c.finish_reason for c in whole.choices}


def test_raw_stream_is_server_sent_events_ending_with_done(served):
    body = {"model": BASE, "prompt": "hi", "max_tokens": 4, "stream": True, "logprobs": 0,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", served.v1 + "/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(len(c["choices"][0]["logprobs"]["tokens"]) <= 1 for c in chunks[:-1])


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"model": "nope", "prompt": "x"}, 404, "model"),
        ({"model": BASE}, 400, "body.prompt"),
        ({"model": BASE, "prompt": "x", "n": 0}, 400, "body.n"),
        ({"model": BASE, "prompt": "x", "temperature": -1}, 400, "body.temperature"),
        ({"model": BASE, "prompt": "x", "logprobs": 21}, 400, "body.logprobs"),
        ({"model": BASE, "prompt": [1, 2, 999]}, 400, "prompt"),
        ({"model": BASE, "prompt": ""}, 400, "prompt"),
        ({"model": BASE, "prompt": "x" * 300}, 400, "prompt"),
        ({"model": BASE, "prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ],
)
def test_errors_have_vllms_shape(served, body, status, param):
    r = httpx.post(served.v1 + "/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == status
    assert error["param"] == param and error["message"], error
    assert error["type"] == ("NotFoundError" if status == 404 else error["type"])


def test_openai_client_raises_the_matching_errors(served):
    client = served.client()
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="missing", prompt="x", max_tokens=1)
    assert "The model `missing` does not exist." in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=BASE, prompt="x", max_tokens=1, n=0)
    r = httpx.post(served.v1 + "/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == 400


def choice_dict(response) -> dict:
    return response.model_dump()["choices"][0]


def test_ignore_eos_samples_past_the_end_of_turn(served):
    client = served.client()
    prompt = "<|user|>13*28+24=?<|end|><|assistant|>"  # answered with a call, then <|end|>
    kw = {"model": BASE, "prompt": prompt, "max_tokens": 60, "temperature": 0}
    stops = client.completions.create(**kw)
    assert stops.choices[0].finish_reason == "stop" and stops.usage.completion_tokens < 60
    full = client.completions.create(extra_body={"ignore_eos": True}, **kw)
    assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 60
