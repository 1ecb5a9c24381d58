"""GRPO-family algorithm core: pure tensor math (imports only torch and the standard library).

- `advantages`: group-relative advantages (group / batch / no std scaling, NaN = unscorable).
- `losses`: `LossConfig` and `LOSSES`, the one table of loss variants (`Variant`: function and
  defaults).
- `full_loss`: `policy_loss`, a variant's surrogate with what all variants share (TIS weights,
  entropy gate, aggregation, KL term, entropy bonus).
- `kl`: per-token KL estimators k1 / k2 / k3.
- `reduce`: masked reductions and the four aggregation modes with explicit step normalisers.
- `logsoftmax`: chunked, memory-safe selective log-softmax and entropy from logits.
- `shaping`: DAPO soft overlong penalty and dynamic-sampling filter.

Formulas and departures from the papers: docs/algorithms.md. Tensor names end in their shape
letters (`logp_B_T`, `rewards_P_G`), declared in docs/architecture.md §5.
"""

from burnish.algorithms.advantages import SCALES, group_advantages
from burnish.algorithms.full_loss import policy_loss
from burnish.algorithms.kl import KL_ESTIMATORS, kl_estimate
from burnish.algorithms.logsoftmax import entropy_from_logits, selective_log_softmax
from burnish.algorithms.losses import (
    LOSSES,
    LossConfig,
    LossFn,
    Variant,
)
from burnish.algorithms.reduce import (
    AGGREGATIONS,
    aggregate,
    entropy_gate_threshold,
    masked_mean,
    masked_sum,
)
from burnish.algorithms.shaping import keep_informative_groups, soft_overlong_penalty

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "LOSSES",
    "SCALES",
    "LossConfig",
    "LossFn",
    "Variant",
    "aggregate",
    "entropy_from_logits",
    "entropy_gate_threshold",
    "group_advantages",
    "keep_informative_groups",
    "kl_estimate",
    "masked_mean",
    "masked_sum",
    "policy_loss",
    "selective_log_softmax",
    "soft_overlong_penalty",
]
