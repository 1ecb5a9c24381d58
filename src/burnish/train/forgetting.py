"""Forgetting at every eval point of a run (RL, SFT or distillation): retention and KL to base.

`ForgettingProbe.measure` evaluates each `eval.retention` skill on its test split (rows named
``retention/ENV``) and the KL between the policy and its base on the new task's test
prompts (`burnish.eval.forgetting.kl_to_base`, the row ``kl/base`` with ``forward`` and
``reverse``), both in the store's `forgetting` table. `forgetting_summary` reads them back for `summary.json`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from burnish.envs import load_env
from burnish.eval import evaluate_async
from burnish.eval.forgetting import kl_to_base
from burnish.models.lora import is_lora
from burnish.train.plan import EvalSettings, ForgettingSettings

RETENTION_PREFIX = "retention/"
KL_ROW = "kl/base"


@dataclass
class ForgettingProbe:
    """What measuring forgetting needs: the settings, the retention environments and the base."""

    settings: ForgettingSettings
    retention_envs: list[Any]
    base: Any | None
    """A frozen copy of the base weights (full fine-tuning); None: the LoRA adapter switched off."""

    @classmethod
    def build(cls, settings: ForgettingSettings, policy: Any) -> ForgettingProbe:
        """Call before the first update (and before loading a checkpoint): with full
        fine-tuning the base is copied from `policy` as it is now."""
        base = None
        if not is_lora(policy):
            base = copy.deepcopy(policy).eval()
            for p in base.parameters():
                p.requires_grad_(False)
        return cls(settings, [load_env(n) for n in settings.retention], base)

    async def measure(
        self,
        policy: Any,
        tokenizer: Any,
        new_envs: list[Any],
        ev: EvalSettings,
        store,
        step: int,
        sampler: Any | None = None,
    ) -> dict[str, Any]:
        """Evaluate the retention skills (through `sampler` when given: a served run's) and the
        KL to base (always in process: it needs both policies' log-probs); log them at `step`;
        return them as ``{"retention/ENV": metrics, "kl/base": {...}}``."""
        s, out = self.settings, {}
        context = getattr(getattr(policy, "config", None), "max_position_embeddings", None)
        limit = {"max_tokens": int(context)} if context else {}  # a skill's episode must fit
        for env in self.retention_envs:
            res = await evaluate_async(
                policy,
                tokenizer,
                env,
                samples=ev.samples,
                n_tasks=ev.n_tasks,
                split="test",
                temperature=ev.temperature,
                seed=ev.seed,
                max_new_tokens=s.retention_max_new_tokens,
                sampler=sampler,
                **limit,
            )
            out[RETENTION_PREFIX + env.name] = res.to_dict()
        out[KL_ROW] = await kl_to_base(
            policy,
            tokenizer,
            new_envs,
            base=self.base,
            n_tasks=s.kl_tasks,
            seed=ev.seed,
            temperature=ev.temperature,
            max_new_tokens=s.kl_max_new_tokens,
            budget=s.kl_budget.kwargs(),
        )
        for name, metrics in out.items():
            store.log_forgetting(step, name, metrics)
        return out


def forgetting_summary(store) -> dict[str, Any]:
    """``{"retention": {ENV: {"before", "after"}}, "kl_to_base": {"forward", "reverse"}}`` from the
    store's first and last eval rows (pass@1 for the skills; the last KL)."""
    rows = store.forgetting()
    retention: dict[str, dict[str, float]] = {}
    kl = {"forward": 0.0, "reverse": 0.0}
    for row in rows:  # ordered by step
        name = row["name"]
        if name.startswith(RETENTION_PREFIX):
            entry = retention.setdefault(name.removeprefix(RETENTION_PREFIX), {})
            entry.setdefault("before", row["pass@1"])
            entry["after"] = row["pass@1"]
        elif name == KL_ROW:
            kl = {"forward": row["forward"], "reverse": row["reverse"]}
    return {"retention": retention, "kl_to_base": kl}
