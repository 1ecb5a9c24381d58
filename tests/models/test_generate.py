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
