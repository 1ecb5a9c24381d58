import torch

from burnish.models.generate import sample_next_tokens

LOGITS_V = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])


def _draw(n, temperature=1.0, top_p=1.0, top_k=0, seed=0):
    logits = LOGITS_V.expand(n, -1)
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    return sample_next_tokens(
        logits,
        torch.full((n,), temperature),
        torch.full((n,), top_p),
        torch.full((n,), top_k, dtype=torch.long),
        u,
    )


def _check_frequencies(tokens, probs, n):
    freq = torch.bincount(tokens, minlength=len(probs)).float() / n
    # 5 standard errors of a binomial proportion
    tol = 5 * torch.sqrt(probs * (1 - probs) / n) + 1e-9
    assert torch.all((freq - probs).abs() <= tol), (freq, probs)


def test_untruncated_sampling_matches_softmax_and_reports_its_logprob():
    n = 40000
    tokens, logp = _draw(n, temperature=0.8)
    logp_v = torch.log_softmax(LOGITS_V / 0.8, -1)
    _check_frequencies(tokens, logp_v.exp(), n)
    torch.testing.assert_close(logp, logp_v[tokens])


def test_top_k_then_top_p_truncate_and_renormalise():
    n = 40000
    tokens, logp = _draw(n, top_k=3)
    p3 = torch.softmax(LOGITS_V[:3], -1)
    expected = torch.cat([p3, torch.zeros(2)])
    _check_frequencies(tokens, expected, n)
    torch.testing.assert_close(logp, expected[tokens].log())

    # softmax(LOGITS_V) = [.575, .212, .128, .078, .029]; top_p=0.7 keeps the first two
    tokens, logp = _draw(n, top_p=0.7)
    p2 = torch.softmax(LOGITS_V[:2], -1)
    expected = torch.cat([p2, torch.zeros(3)])
    _check_frequencies(tokens, expected, n)
    torch.testing.assert_close(logp, expected[tokens].log())


def test_greedy_rows_take_argmax_with_model_logprob_beside_sampled_rows():
    logits = torch.randn(4, 11)
    temperature = torch.tensor([0.0, 1.0, 0.0, 1.0])
    u = torch.tensor([0.99, 0.0, 0.5, 0.999999])
    tokens, logp = sample_next_tokens(
        logits, temperature, torch.ones(4), torch.zeros(4, dtype=torch.long), u
    )
    model_logp = torch.log_softmax(logits, -1)
    assert tokens[0] == logits[0].argmax() and tokens[2] == logits[2].argmax()
    torch.testing.assert_close(logp, model_logp.gather(-1, tokens[:, None]).squeeze(-1))
    assert tokens[1] == 0  # u = 0 picks the first token of positive probability


def test_zero_probability_token_is_never_drawn():
    logits = torch.tensor([[float("-inf"), 0.0, float("-inf"), 0.0]]).expand(3, -1)
    u = torch.tensor([0.0, 0.5, 0.9999999])
    tokens, logp = sample_next_tokens(
        logits, torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.long), u
    )
    assert tokens.tolist() == [1, 3, 3]
    torch.testing.assert_close(logp, torch.full((3,), -0.6931472))


def test_identical_prompts_are_prefilled_once_and_sampled_independently():
    from burnish.models.generate import GenerationRow, generate_rows
    from burnish.models.logprobs import sequence_logprobs
    from burnish.models.tiny import tiny_model

    model, tok = tiny_model(seed=1)
    prompts = [tuple(tok.encode("12+34=")), tuple(tok.encode("7-5="))]
    rows = [
        GenerationRow(prompt=p, max_new_tokens=6, temperature=1.0, top_p=1.0, top_k=0,
                      stop_token_ids=(tok.eos_token_id,), stop=(), seed=s)
        for p in prompts for s in range(4)
    ]  # fmt: skip
    batch_sizes = []
    hook = model.register_forward_hook(lambda m, a, kw, out: batch_sizes.append(
        kw["input_ids"].shape), with_kwargs=True)  # fmt: skip
    results = generate_rows(model, tok, rows, pad_id=tok.pad_token_id)
    hook.remove()
    assert batch_sizes[0][0] == 2  # one prefill row per distinct prompt
    assert len({tuple(r.tokens) for r in results[:4]}) > 1  # rows of one prompt still differ
    for row, res in zip(rows, results):  # and each reports its own logprobs exactly
        ids = torch.tensor([list(row.prompt) + res.tokens])
        logp, _ = sequence_logprobs(model, ids)
        torch.testing.assert_close(logp[0, len(row.prompt):], torch.tensor(res.logprobs),
                                   atol=1e-5, rtol=0)  # fmt: skip


def _two_adapter_model():
    from burnish.models.lora import attach_lora
    from burnish.models.tiny import tiny_model

    model, tok = tiny_model(seed=2)
    torch.manual_seed(3)
    peft = attach_lora(model, rank=4, adapter_name="a")
    peft.add_adapter("b", peft.peft_config["a"])
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft.eval(), tok


def test_rows_with_their_own_adapters_equal_one_adapter_at_a_time():
    """A mixed-adapter batch (PEFT adapter_names) samples each row exactly as a batch of that
    adapter alone: same tokens, same logprobs."""
    from dataclasses import replace

    from burnish.models.generate import GenerationRow, generate_rows
    from burnish.models.lora import BASE_ROW

    peft, tok = _two_adapter_model()
    base = peft.get_base_model()
    rows = [
        GenerationRow(prompt=tuple(tok.encode(t)), max_new_tokens=8, temperature=temp, seed=s,
                      stop_token_ids=(tok.eos_token_id,))
        for t in ("12+3=", "hi") for temp, s in ((0.0, 0), (1.0, 5))
    ]  # fmt: skip
    names = ["a", "b", BASE_ROW]
    mixed = generate_rows(base, tok, [replace(r, adapter=n) for n in names for r in rows], pad_id=0)
    per_adapter = []
    for name in names:
        if name == BASE_ROW:
            with peft.disable_adapter():
                per_adapter += generate_rows(base, tok, rows, pad_id=0)
        else:
            peft.set_adapter(name)
            per_adapter += generate_rows(base, tok, rows, pad_id=0)
    assert [r.tokens for r in mixed] == [r.tokens for r in per_adapter]
    for m, p in zip(mixed, per_adapter):
        torch.testing.assert_close(torch.tensor(m.logprobs), torch.tensor(p.logprobs))
    assert len({tuple(r.tokens) for r in mixed[:4]} | {tuple(r.tokens) for r in mixed[4:8]}) > 4


def test_a_batch_names_every_rows_adapter_or_none():
    import pytest

    from burnish.models.generate import GenerationRow, generate_rows

    peft, tok = _two_adapter_model()
    rows = [GenerationRow(prompt=(5, 6), max_new_tokens=2, adapter="a"),
            GenerationRow(prompt=(5, 6), max_new_tokens=2)]  # fmt: skip
    with pytest.raises(ValueError, match="every row or of none"):
        generate_rows(peft.get_base_model(), tok, rows, pad_id=0)
    with pytest.raises(ValueError, match="does not have"):
        generate_rows(
            peft.get_base_model(), tok,
            [GenerationRow(prompt=(5, 6), max_new_tokens=2, adapter="c")], pad_id=0,
        )  # fmt: skip


def test_top_logprobs_are_the_most_likely_tokens_of_the_sampled_distribution():
    from burnish.models.generate import GenerationRow, generate_rows, top_alternatives
    from burnish.models.tiny import tiny_model

    model, tok = tiny_model(seed=1)
    prompt = tuple(tok.encode("7-5="))
    (res,) = generate_rows(
        model, tok, [GenerationRow(prompt=prompt, max_new_tokens=3, temperature=0.7, seed=1,
                                   top_logprobs=4)], pad_id=0,
    )  # fmt: skip
    assert len(res.top_logprobs) == 3 and all(len(t) == 4 for t in res.top_logprobs)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(prompt) + res.tokens])).logits[0]
    for step, top in enumerate(res.top_logprobs):
        expected = torch.log_softmax(logits[len(prompt) - 1 + step] / 0.7, -1).topk(4)
        assert [t for t, _ in top] == expected.indices.tolist()
        torch.testing.assert_close(torch.tensor([lp for _, lp in top]), expected.values,
                                   atol=1e-5, rtol=0)  # fmt: skip
        assert res.logprobs[step] <= top[0][1] + 1e-6
    # top-k truncation: tokens past k carry -inf (and greedy rows report the model's own)
    logits_B_V = torch.tensor([[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    ids, logp = top_alternatives(
        logits_B_V, torch.tensor([1.0, 0.0]), torch.ones(2), torch.tensor([2, 2]), 3
    )
    assert ids[0, :2].tolist() == [0, 1] and logp[0, 2] == float("-inf")
    torch.testing.assert_close(logp[1], torch.log_softmax(logits_B_V[1], -1)[:3])
