"""Reference equivalence: the shared-prefix forward equals the plain forward on full rows.

Behaviour lock: `shared_prefix_logprobs` must give the same log-probs, entropies and LoRA
gradients as `sequence_logprobs`; do not loosen the tolerances without an explicit decision.
"""

from types import SimpleNamespace

import pytest
import torch

from burnish.models import attach_lora, sequence_logprobs, tiny_model
from burnish.models.shared_prefix import (
    SECOND_PASS_FLOPS,
    layout_flops,
    packed_pays,
    plan_shared_prefixes,
    prompt_lengths,
    shared_prefix_logprobs,
    supports_shared_prefix,
)


def _policy(arch: str = "llama"):
    base, tok = tiny_model(arch, hidden_size=32, num_layers=2, num_heads=2)
    policy = attach_lora(base, rank=4, alpha=8).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a non-zero adapter, so that LoRA B gets a gradient through k/v
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return policy, len(tok)


def _rows_to_batch(rows: list[list[int]], masks: list[list[int]]):
    B, T = len(rows), max(len(r) for r in rows)
    tokens = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    lengths = torch.tensor([len(r) for r in rows])
    return tokens, mask, lengths


def _grpo_like_batch(vocab: int, seed: int = 0):
    """Three groups of 4 rows sharing a prompt, one group of 1, a duplicate row, a 1-token row.

    Rows are interleaved across groups, and completions of a group often start with the same
    token (so the common prefix reaches past the prompt).
    """
    g = torch.Generator().manual_seed(seed)
    rows, masks = [], []
    prompts = [torch.randint(10, vocab, (n,), generator=g).tolist() for n in (5, 3, 7, 4)]
    for k in range(4):
        for p, prompt in enumerate(prompts):
            if p == 3 and k > 0:
                continue  # group of one
            n_out = int(torch.randint(1, 7, (1,), generator=g))
            out = torch.randint(10, 13, (n_out,), generator=g).tolist()  # small alphabet
            rows.append(prompt + out)
            masks.append([0] * len(prompt) + [1] * n_out)
    rows.append(list(rows[0]))  # an exact duplicate: the prefix must stop one token short
    masks.append(list(masks[0]))
    rows.append([7])  # nothing to predict
    masks.append([1])
    return _rows_to_batch(rows, masks)


def _multi_turn_batch(vocab: int, seed: int = 0):
    """Prompt, sampled, observation, sampled: only the leading common run may be shared."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(10, vocab, (6,), generator=g).tolist()
    rows, masks = [], []
    for _ in range(5):
        a1 = torch.randint(10, 12, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g)
        obs = torch.randint(10, vocab, (3,), generator=g).tolist()
        a2 = torch.randint(10, vocab, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g)
        rows.append(prompt + a1.tolist() + obs + a2.tolist())
        masks.append([0] * 6 + [1] * len(a1) + [0] * 3 + [1] * len(a2))
    return _rows_to_batch(rows, masks)


def _compare(policy, tokens, mask, lengths, temperature=0.7):
    B, T = tokens.shape
    attn = (torch.arange(T)[None, :] < lengths[:, None]).long()
    g = torch.Generator().manual_seed(2)
    w_lp, w_ent = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    params = [p for p in policy.parameters() if p.requires_grad]

    def run(fn):
        logp, ent = fn()
        grads = torch.autograd.grad((logp * w_lp).sum() + (ent * w_ent).sum(), params)
        return logp.detach(), ent.detach(), grads

    ref = run(
        lambda: sequence_logprobs(
            policy, tokens, attention_mask_B_T=attn, temperature=temperature, with_entropy=True
        )
    )
    share = prompt_lengths(mask, lengths)
    assert any(float(g.abs().max()) > 1e-3 for g in ref[2]), "reference gradient is all zero"
    for layout in ("padded", "packed"):
        got = run(
            lambda layout=layout: shared_prefix_logprobs(
                policy,
                tokens,
                lengths,
                share,
                temperature=temperature,
                with_entropy=True,
                chunk_size=7,
                layout=layout,
            )  # fmt: skip
        )
        torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-5, msg=f"{layout} logp")
        torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-5, msg=f"{layout} entropy")
        for name_g, (a, b) in enumerate(zip(got[2], ref[2], strict=True)):
            torch.testing.assert_close(
                a, b, rtol=0, atol=1e-5, msg=f"{layout}: gradient {name_g} differs"
            )


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_equals_plain_forward_on_grouped_rows(arch):
    policy, vocab = _policy(arch)
    assert supports_shared_prefix(policy)
    tokens, mask, lengths = _grpo_like_batch(vocab)
    _compare(policy, tokens, mask, lengths)


def test_equals_plain_forward_on_multi_turn_rows():
    policy, vocab = _policy()
    tokens, mask, lengths = _multi_turn_batch(vocab)
    _compare(policy, tokens, mask, lengths, temperature=1.0)


def test_equals_plain_forward_when_nothing_is_shared():
    policy, vocab = _policy()
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(10, vocab, (n,), generator=g).tolist() for n in (2, 5, 9, 4)]
    masks = [[0] + [1] * (len(r) - 1) for r in rows]
    tokens, mask, lengths = _rows_to_batch(rows, masks)
    plan = plan_shared_prefixes(tokens, lengths, prompt_lengths(mask, lengths))
    assert plan.num_prefixes == 4
    _compare(policy, tokens, mask, lengths)


def test_plan_groups_by_prompt_and_extends_the_common_run():
    tokens, mask, lengths = _rows_to_batch(
        [[1, 2, 3, 4, 5], [1, 2, 3, 4, 9, 9], [1, 2, 3, 7], [8, 2, 3, 4], [1, 2, 3, 4, 5]],
        [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1, 1]],
    )
    share = prompt_lengths(mask, lengths)
    assert share.tolist() == [2, 2, 2, 2, 2]
    plan = plan_shared_prefixes(tokens, lengths, share)
    # rows 0, 1, 2, 4 share [1, 2]; their common run is [1, 2, 3] (row 2 differs at index 3)
    assert plan.prefix_of_R.tolist() == [0, 0, 0, 1, 0]
    assert plan.prefix_len_U.tolist() == [3, 3]
    # the duplicates alone would share all but their last token
    pair = plan_shared_prefixes(tokens[[0, 4]], lengths[[0, 4]], share[[0, 4]])
    assert pair.prefix_len_U.tolist() == [4]


def test_no_grad_and_bad_input():
    policy, vocab = _policy()
    tokens, mask, lengths = _grpo_like_batch(vocab)
    share = prompt_lengths(mask, lengths)
    with torch.no_grad():
        logp, ent = shared_prefix_logprobs(policy, tokens, lengths, share)
    assert ent is None and not logp.requires_grad and logp.shape == tokens.shape
    with pytest.raises(ValueError, match="temperature"):
        shared_prefix_logprobs(policy, tokens, lengths, share, temperature=0.0)
    with pytest.raises(ValueError, match="lengths_B"):
        shared_prefix_logprobs(policy, tokens, lengths + 100, share)
    with pytest.raises(ValueError, match="layout must be one of"):
        shared_prefix_logprobs(policy, tokens, lengths, share, layout="ragged")


def _even_and_uneven_plans():
    prompt = list(range(10, 16))
    uneven = [prompt + [11, 2]] * 15 + [prompt + [12] * 30]
    even = [prompt + [11 + k % 3] * 30 for k in range(16)]
    plans = []
    for rows in (uneven, even):
        tokens, mask, lengths = _rows_to_batch(rows, [[0] * 6 + [1] * (len(r) - 6) for r in rows])
        plans.append(
            (plan_shared_prefixes(tokens, lengths, prompt_lengths(mask, lengths)), lengths)
        )
    return plans


def _config_only(hidden: int, intermediate: int):
    """All `layout_flops` reads of a model: its config's widths."""
    return SimpleNamespace(
        config=SimpleNamespace(hidden_size=hidden, intermediate_size=intermediate)
    )


def test_layout_flops_counts_padding_attention_and_the_second_pass():
    """One prefix of 6, suffixes 2 x 15 and 30: the counts of the docstring, by hand."""
    (plan, lengths), _ = _even_and_uneven_plans()
    h, i = 512, 2048
    per_token, per_pair = 8 * h * h + 6 * h * i, 4 * h
    padded, packed = layout_flops(_config_only(h, i), plan, lengths)
    assert padded == (6 + 16 * 30) * per_token + (36 + 16 * 30 * 36) * per_pair + SECOND_PASS_FLOPS
    n = 6 + 15 * 2 + 30
    assert packed == n * per_token + n * n * per_pair


def test_auto_layout_packs_short_completions_and_pads_long_ones():
    """`packed_pays`: many short completions next to one long one pack; at a 34m-wide model
    equal lengths pad (the attention over the packed sequence costs more than the padding)."""
    (uneven, uneven_len), (even, even_len) = _even_and_uneven_plans()
    policy, _ = _policy()
    assert packed_pays(policy, uneven, uneven_len)
    wide = _config_only(512, 2048)
    assert packed_pays(wide, uneven, uneven_len)
    assert not packed_pays(wide, even, even_len)


def test_auto_layout_packs_at_small_widths_where_the_second_pass_dominates():
    """At hidden 32 the even rows' extra attention is worth less than a second pass; packed
    sequences over `PACKED_MAX_TOKENS` never pack, however much padding they would save."""
    (_, _), (even, even_len) = _even_and_uneven_plans()
    policy, _ = _policy()
    padded, packed = layout_flops(policy, even, even_len)
    assert padded - SECOND_PASS_FLOPS < packed < padded
    assert packed_pays(policy, even, even_len)
    prompt = list(range(10, 16))
    rows = [prompt + [11, 2]] * 100 + [prompt + [12] * 4100]  # 4,306 packed tokens
    tokens, mask, lengths = _rows_to_batch(rows, [[0] * 6 + [1] * (len(r) - 6) for r in rows])
    plan = plan_shared_prefixes(tokens, lengths, prompt_lengths(mask, lengths))
    wide = _config_only(512, 2048)
    padded, packed = layout_flops(wide, plan, lengths)
    assert packed < padded / 10
    assert not packed_pays(wide, plan, lengths)


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_gradient_repeats_bit_for_bit_with_two_threads(layout):
    """Rows of a group read its prefix's states, so the backward sums repeated indices; with
    2 threads advanced indexing's backward summed them in another order at every repeat."""
    policy, vocab = _policy()
    g = torch.Generator().manual_seed(3)
    rows, masks = [], []
    for _ in range(8):
        prompt = torch.randint(10, vocab, (24,), generator=g).tolist()
        for _ in range(16):  # completions from a small alphabet: shared first tokens
            out = torch.randint(10, 13, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g)
            rows.append(prompt + out.tolist())
            masks.append([0] * len(prompt) + [1] * len(out))
    order = torch.randperm(len(rows), generator=g).tolist()  # groups interleaved, as in training
    tokens, mask, lengths = _rows_to_batch([rows[i] for i in order], [masks[i] for i in order])
    weights = torch.randn(tokens.shape, generator=g)
    params = [p for p in policy.parameters() if p.requires_grad]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            policy.zero_grad()
            logp, _ = shared_prefix_logprobs(
                policy, tokens, lengths, prompt_lengths(mask, lengths), layout=layout
            )
            (logp * mask * weights).sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in params]))
    finally:
        torch.set_num_threads(threads)
    for other in grads[1:]:
        assert torch.equal(other, grads[0])
