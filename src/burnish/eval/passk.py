"""pass@k: the unbiased estimator of Chen et al. (2021), https://arxiv.org/abs/2107.03374.

pass@k = 1 − C(n − c, k) / C(n, k): the probability that at least one of k samples drawn
without replacement from the n generated (c of them correct) is correct. Computed as a product
to stay exact for large n, as in the paper's reference code.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed.

    Raises:
        ValueError: unless 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(correct_P: Sequence[int], n: int, k: int) -> float:
    """pass@k averaged over problems, each with `n` samples of which `correct_P[p]` passed."""
    if not correct_P:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for c in correct_P) / len(correct_P)
