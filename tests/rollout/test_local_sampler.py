import asyncio

import pytest
import torch

from burnish.models.logprobs import sequence_logprobs
from burnish.models.lora import attach_lora, reference_mode, save_adapter
from burnish.models.tiny import tiny_model
from burnish.rollout import LocalSampler, Sampler, SamplingParams

PROMPTS = ["<|user|>hi<|end|><|assistant|>", "abc", "a much longer prompt than the others!"]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def model_tok():
    return tiny_model()


def _encode(tok, texts=PROMPTS):
    return [tok.encode(t) for t in texts]


def _greedy_reference(model, prompt, steps):
    ids = list(prompt)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def test_is_a_sampler(model_tok):
    assert isinstance(LocalSampler(*model_tok), Sampler)


def test_logprobs_equal_a_fresh_forward_with_left_padding(model_tok):
    model, tok = model_tok
    sampler = LocalSampler(model, tok)
    prompts = _encode(tok)
    out = run(sampler.sample(prompts, SamplingParams(max_new_tokens=12, n=2, seed=1)))
    assert [c.prompt_index for c in out] == [0, 0, 1, 1, 2, 2]
    assert sampler.stats.generations == 1  # all six rows in one left-padded batch
    for c in out:
        full = torch.tensor([prompts[c.prompt_index] + list(c.token_ids)])
        with torch.no_grad():
            logp, _ = sequence_logprobs(model, full)
        expected = logp[0, len(prompts[c.prompt_index]) :]
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-5, rtol=0)
    # and the batched forward (left padding + mask) agrees too
    width = max(
        len(p) + len(c.token_ids) for p, c in zip([prompts[c.prompt_index] for c in out], out)
    )
    x = torch.zeros(len(out), width, dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, c in enumerate(out):
        seq = prompts[c.prompt_index] + list(c.token_ids)
        x[i, width - len(seq) :] = torch.tensor(seq)
        mask[i, width - len(seq) :] = 1
    with torch.no_grad():
        logp, _ = sequence_logprobs(model, x, attention_mask_B_T=mask)
    for i, c in enumerate(out):
        k = len(c.token_ids)
        torch.testing.assert_close(
            logp[i, width - k :], torch.tensor(c.logprobs), atol=1e-5, rtol=0
        )


def test_same_seed_same_samples_regardless_of_batching(model_tok):
    model, tok = model_tok
    prompts = _encode(tok)
    params = SamplingParams(max_new_tokens=16, n=2, seed=7, top_p=0.95)
    alone = run(LocalSampler(model, tok).sample(prompts, params))

    async def crowded():
        sampler = LocalSampler(model, tok)
        other = SamplingParams(max_new_tokens=5, seed=3)
        res = await asyncio.gather(
            sampler.sample(prompts[::-1], other), sampler.sample(prompts, params)
        )
        return sampler, res[1]

    sampler, together = run(crowded())
    assert sampler.stats.generations == 1
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    again = run(LocalSampler(model, tok).sample(prompts, params))
    assert [c.token_ids for c in again] == [c.token_ids for c in alone]
    different = run(
        LocalSampler(model, tok).sample(prompts, SamplingParams(max_new_tokens=16, n=2, seed=8))
    )
    assert [c.token_ids for c in different] != [c.token_ids for c in alone]
    # n samples of one prompt differ from each other
    assert alone[0].token_ids != alone[1].token_ids


def test_unseeded_calls_are_reproducible_from_the_sampler_seed(model_tok):
    model, tok = model_tok
    prompts = _encode(tok)
    params = SamplingParams(max_new_tokens=8)
    a = LocalSampler(model, tok, seed=5)
    b = LocalSampler(model, tok, seed=5)
    first = run(a.sample(prompts, params))
    assert [c.token_ids for c in run(b.sample(prompts, params))] == [c.token_ids for c in first]
    assert [c.token_ids for c in run(a.sample(prompts, params))] != [c.token_ids for c in first]


def test_temperature_zero_is_greedy(model_tok):
    model, tok = model_tok
    prompts = _encode(tok)
    out = run(
        LocalSampler(model, tok).sample(prompts, SamplingParams(max_new_tokens=10, temperature=0))
    )
    for c, p in zip(out, prompts):
        assert list(c.token_ids) == _greedy_reference(model, p, 10)
        generated = model.generate(
            torch.tensor([p]), do_sample=False, max_new_tokens=10, min_new_tokens=10
        )[0, len(p) :].tolist()
        assert list(c.token_ids) == generated
    # top_k = 1 samples the argmax too, and its truncated distribution gives logprob 0
    out_k = run(
        LocalSampler(model, tok).sample(prompts, SamplingParams(max_new_tokens=10, top_k=1))
    )
    assert [c.token_ids for c in out_k] == [c.token_ids for c in out]
    assert all(lp == 0.0 for c in out_k for lp in c.logprobs)


def test_stop_token_stop_string_eos_and_length(model_tok):
    model, tok = model_tok
    prompt = tok.encode("hello")
    greedy = _greedy_reference(model, prompt, 12)
    sampler = LocalSampler(model, tok)

    def once(**kw):
        return run(
            sampler.sample([prompt], SamplingParams(max_new_tokens=12, temperature=0, **kw))
        )[0]

    c = once()
    assert c.finish_reason == "length" and len(c.token_ids) == 12
    k = next(i for i in range(3, 12) if greedy[i] not in greedy[:i])
    c = once(stop_token_ids=(greedy[k],))
    assert c.finish_reason == "stop" and list(c.token_ids) == greedy[: k + 1]
    text = tok.decode(greedy)
    stop = text[5:7]
    end = text.index(stop) + len(stop)  # one char per token
    c = once(stop=(stop,))
    assert c.finish_reason == "stop" and list(c.token_ids) == greedy[:end]
    assert c.text.endswith(stop)
    c = run(sampler.sample([prompt], SamplingParams(max_new_tokens=3, temperature=0)))[0]
    assert c.finish_reason == "length" and len(c.token_ids) == 3

    # the tokenizer's EOS always stops
    eos_model, eos_tok = tiny_model()
    eos_model.generation_config.eos_token_id = None
    eos_tok.eos_token = tok.convert_ids_to_tokens(greedy[k])
    c = run(
        LocalSampler(eos_model, eos_tok).sample(
            [prompt], SamplingParams(max_new_tokens=12, temperature=0)
        )
    )[0]
    assert c.finish_reason == "stop" and list(c.token_ids) == greedy[: k + 1]


def test_concurrent_single_prompt_calls_are_coalesced(model_tok):
    model, tok = model_tok
    sampler = LocalSampler(model, tok)
    prefill_batches = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: (
            prefill_batches.append(kwargs["input_ids"].shape)
            if kwargs["input_ids"].shape[1] > 1
            else None
        ),
        with_kwargs=True,
    )

    async def episode(i):
        await asyncio.sleep(0)  # episodes reach sample() on different event-loop turns
        if i % 2:
            await asyncio.sleep(0)
        return await sampler.sample([tok.encode(f"task {i}")], SamplingParams(max_new_tokens=4))

    async def step():
        return await asyncio.gather(*[episode(i) for i in range(16)])

    try:
        results = run(step())
    finally:
        handle.remove()
    assert all(len(r) == 1 and len(r[0].token_ids) == 4 for r in results)
    assert sampler.stats.requests == 16
    assert sampler.stats.generations == 1
    assert len(prefill_batches) == 1 and prefill_batches[0][0] == 16


def test_adapters_base_and_named(model_tok, tmp_path):
    _, tok = model_tok
    base, _ = tiny_model()
    policy = attach_lora(base, rank=4)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    save_adapter(policy, tmp_path / "a")
    policy.load_adapter(str(tmp_path / "a"), adapter_name="frozen")
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n and ".default." in n:
                p.mul_(-1.0)  # the active adapter now differs from "frozen"
    policy.train()
    flags = {n: p.requires_grad for n, p in policy.named_parameters()}
    sampler = LocalSampler(policy, tok)
    prompt = tok.encode("abcd")
    params = SamplingParams(max_new_tokens=8, seed=0)

    def check(adapter, ctx):
        c = run(sampler.sample([prompt], params, adapter=adapter))[0]
        full = torch.tensor([prompt + list(c.token_ids)])
        with torch.no_grad(), ctx():
            logp, _ = sequence_logprobs(policy, full)
        torch.testing.assert_close(
            torch.tensor(c.logprobs), logp[0, len(prompt) :], atol=1e-5, rtol=0
        )
        return c

    import contextlib

    def use(name):
        @contextlib.contextmanager
        def ctx():
            policy.set_adapter(name)
            try:
                yield
            finally:
                policy.set_adapter("default")

        return ctx

    c_default = check(None, contextlib.nullcontext)
    c_base = check("base", lambda: reference_mode(policy))
    c_frozen = check("frozen", use("frozen"))
    assert len({c_default.logprobs, c_base.logprobs, c_frozen.logprobs}) == 3
    assert policy.active_adapter == "default" and policy.training
    assert flags == {n: p.requires_grad for n, p in policy.named_parameters()}
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        run(sampler.sample([prompt], params, adapter="nope"))
    with pytest.raises(ValueError, match="needs a PEFT model"):
        run(LocalSampler(*model_tok).sample([prompt], params, adapter="base"))


def test_errors_reach_the_caller(model_tok):
    model, tok = tiny_model(max_position=16)
    sampler = LocalSampler(model, tok)
    with pytest.raises(ValueError, match="at most 16 positions"):
        run(sampler.sample([list(range(3, 20))], SamplingParams(max_new_tokens=2)))
    # the budget is capped to the context: 10 + 6 = 16 positions
    c = run(sampler.sample([list(range(3, 13))], SamplingParams(max_new_tokens=50)))[0]
    assert len(c.token_ids) == 6 and c.finish_reason == "length"
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        run(sampler.sample([[5], []], SamplingParams()))


def test_max_batch_size_splits_but_keeps_samples(model_tok):
    model, tok = model_tok
    prompts = _encode(tok)
    params = SamplingParams(max_new_tokens=6, n=2, seed=11)
    big = run(LocalSampler(model, tok).sample(prompts, params))
    small_sampler = LocalSampler(model, tok, max_batch_size=2)
    small = run(small_sampler.sample(prompts, params))
    assert small_sampler.stats.generations == 3
    assert [c.token_ids for c in small] == [c.token_ids for c in big]


def test_samples_in_eval_mode_and_restores_every_module():
    """Sampling runs with every module in eval mode (a dropout-free forward) and leaves every
    module training again; a module that overrides `train` still has its override called."""
    from burnish.rollout.local import _set_training

    base, tok = tiny_model()
    policy = attach_lora(base, rank=4, alpha=8).train()
    seen = []

    def spy(module, args, kwargs):
        seen.append(all(not m.training for m in policy.modules()))

    policy.get_base_model().register_forward_pre_hook(spy, with_kwargs=True)
    run(LocalSampler(policy, tok).sample(_encode(tok)[:1], SamplingParams(max_new_tokens=3)))
    assert seen and all(seen)
    assert all(m.training for m in policy.modules())

    class Custom(torch.nn.Module):
        calls: list[bool] = []

        def train(self, mode: bool = True):
            Custom.calls.append(mode)
            return super().train(mode)

    outer = torch.nn.Sequential(torch.nn.Linear(2, 2), Custom())
    _set_training(outer, False)
    assert Custom.calls == [False] and not any(m.training for m in outer.modules())
