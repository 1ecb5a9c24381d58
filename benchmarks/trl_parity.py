"""burnish's training step against TRL's GRPOTrainer on one batch: the same gradient?

Runs TRL (the settings of `vs_trl.py`) for ``--steps`` steps, keeps the last batch TRL trained
on (prompts, completions, advantages) and the LoRA weights it reached, then computes the
gradient of that batch twice on the same weights: with TRL's own loss and with burnish's
`train_on_batch` (DAPO, one optimizer step, no clip). Prints both gradient norms and the
relative difference; a difference near float32 rounding says that, given the same samples, the
two trainers take the same step (so a gap in their learning curves comes from elsewhere). Then
samples ``--samples`` completions of each of a few prompts from TRL's trained adapter through
burnish's `generate_rows` and through `model.generate`, and prints the mean graded reward (digit
share) of each: the same weights should give the same distribution.

    python benchmarks/trl_parity.py --size 34m          # needs: pip install -e .[bench]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import torch  # noqa: E402
import vs_trl  # noqa: E402


def _trl_batch(args):
    """Train TRL; return its trainer and the inputs of its last loss call."""
    import trl

    seen: dict = {}
    original = trl.GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        seen["inputs"] = {k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()}
        seen["trainer"] = self
        return original(self, model, inputs)

    trl.GRPOTrainer._compute_loss = spy
    try:
        with tempfile.TemporaryDirectory() as tmp:
            vs_trl.trl_run(args, tmp)
    finally:
        trl.GRPOTrainer._compute_loss = original
    return seen["trainer"], seen["inputs"]


def _as_train_batch(inputs):
    """TRL's left-padded prompts + right-padded completions as burnish's `TrainBatch`."""
    from burnish.types import TrainBatch

    rows, masks = [], []
    for i in range(inputs["prompt_ids"].shape[0]):
        p = inputs["prompt_ids"][i][inputs["prompt_mask"][i].bool()].tolist()
        c = inputs["completion_ids"][i][inputs["completion_mask"][i].bool()].tolist()
        rows.append(p + c)
        masks.append([0.0] * len(p) + [1.0] * len(c))
    B, T = len(rows), max(map(len, rows))
    tokens_B_T, mask_B_T = torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens_B_T[i, : len(r)], mask_B_T[i, : len(m)] = torch.tensor(r), torch.tensor(m)
    lengths_B = torch.tensor([len(r) for r in rows])
    return TrainBatch(
        tokens_B_T, mask_B_T, torch.zeros(B, T), inputs["advantages"].float(), lengths_B
    )


def main() -> None:
    from burnish.algorithms import LossConfig
    from burnish.train.step import StepSettings, train_on_batch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="34m")
    p.add_argument("--steps", type=int, default=12, help="TRL steps before the compared batch")
    p.add_argument("--samples", type=int, default=128, help="samples per prompt")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    shape = vs_trl.SHAPES[a.size]
    with tempfile.TemporaryDirectory() as tmp:
        model_name = bench_models.build(a.size, Path(tmp))
        args = argparse.Namespace(
            size=a.size, model=model_name, threads=2, prompts=shape["prompts"],
            group=shape["group"], max_new_tokens=shape["max_new_tokens"], steps=a.steps,
            lr=shape["lr"], eval_tasks=1, seed=a.seed, set=[],
        )  # fmt: skip
        trainer, inputs = _trl_batch(args)
    model = trainer.model
    model.base_model.model.gradient_checkpointing_disable()
    model.config.use_cache = True  # burnish's shared-prompt forward keeps the prompt's cache
    params = [q for q in model.parameters() if q.requires_grad]

    model.zero_grad()
    trainer._compute_loss(model, inputs).backward()
    g_trl = [q.grad.clone() for q in params]
    model.zero_grad()
    settings = StepSettings(grad_clip=None)
    train_on_batch(
        model,
        _as_train_batch(inputs),
        LossConfig("dapo"),
        torch.optim.SGD(params, lr=0.0),
        settings,
    )
    g_burnish = [q.grad.clone() for q in params]

    def norm(gs):
        return float(torch.sqrt(sum((g.double() ** 2).sum() for g in gs)))

    diff = norm([x - y for x, y in zip(g_burnish, g_trl)])
    print(
        f"size {a.size}, seed {a.seed}, batch after {a.steps} TRL steps, {len(params)} LoRA tensors"
    )
    print(f"  gradient norm: TRL {norm(g_trl):.6f}  burnish {norm(g_burnish):.6f}")
    print(f"relative gradient difference burnish/trl: {diff / norm(g_trl):.2e}")
    _compare_samplers(model, trainer.processing_class, a.samples, shape["max_new_tokens"])


def _compare_samplers(model, tok, n: int, max_new_tokens: int) -> None:
    """Mean digit share of ``n`` samples per prompt: burnish's sampler vs `model.generate`."""
    import statistics

    from burnish.models.generate import GenerationRow, generate_rows

    model.eval()
    print(f"digit share of {n} samples per prompt from TRL's adapter: burnish / model.generate")
    for k, prompt in enumerate(["81+99=", "12+7=", "5*6=", "33-8="]):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tok(ids, add_special_tokens=False)["input_ids"]
        rows = [
            GenerationRow(tuple(ids), max_new_tokens, stop_token_ids=(tok.eos_token_id,), seed=j)
            for j in range(n)
        ]
        torch.manual_seed(k)
        with torch.no_grad():
            ours = generate_rows(model.get_base_model(), tok, rows, pad_id=tok.pad_token_id)
            x = torch.tensor([ids] * n)
            hf = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, top_k=0,
                top_p=1.0, temperature=1.0, max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )  # fmt: skip

        def share(token_ids) -> float:
            return bench_models.digit_share(tok.decode(token_ids, skip_special_tokens=True))

        a = statistics.fmean(share(r.tokens) for r in ours)
        b = statistics.fmean(share(o[len(ids) :]) for o in hf)
        print(f"  {prompt:8s} {a:.3f} / {b:.3f}")


if __name__ == "__main__":
    main()
