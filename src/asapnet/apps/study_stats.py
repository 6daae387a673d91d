"""Statistics of the A/B study: the binomial confidence interval and two-sided p-value of a preference count."""
from __future__ import annotations

import math
from typing import List, Tuple


def binomial_ci(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Clopper-Pearson (exact) confidence interval of a proportion k/n, as fractions in [0, 1].

    The ends solve P(X >= k | p) = (1 - confidence) / 2 and P(X <= k | p) = (1 - confidence) / 2
    for X ~ Binomial(n, p), by bisection on the binomial tail summed in log space (the same values
    as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` to ~1e-12). Returns
    (nan, nan) when n == 0.

    Raises:
        ValueError: k outside [0, n], or confidence outside (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1 - confidence
    log_comb = [math.log(math.comb(n, i)) for i in range(n + 1)]
    # lower end: P(X >= k | p) = alpha / 2, upper end: P(X <= k | p) = alpha / 2
    low = 0.0 if k == 0 else _solve_increasing(lambda p: _binomial_log_sum(log_comb, range(k, n + 1), p),
                                               math.log(alpha / 2))
    high = 1.0 if k == n else 1.0 - _solve_increasing(
        lambda q: _binomial_log_sum(log_comb, range(n - k, n + 1), q), math.log(alpha / 2))
    return low, high


def _binomial_log_sum(log_comb: List[float], ks: range, p: float) -> float:
    """log of sum_{i in ks} C(n, i) p^i (1 - p)^(n - i), with n = len(log_comb) - 1 and 0 < p < 1."""
    n = len(log_comb) - 1
    lp, lq = math.log(p), math.log1p(-p)
    terms = [log_comb[i] + i * lp + (n - i) * lq for i in ks]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def _solve_increasing(f, target: float) -> float:
    """The p in (0, 1) where the increasing function f reaches target, by bisection to float precision."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid <= lo or mid >= hi:
            break
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def binomial_p_value(k: int, n: int) -> float:
    """Two-sided exact binomial-test p-value of k successes in n trials against p = 0.5.

    With p = 0.5 the distribution is symmetric, so the outcomes at most as likely as k are the two
    tails beyond min(k, n - k) and max(k, n - k): p = 2 P(X <= min(k, n - k)), capped at 1
    (computed exactly in integers; the same value as ``scipy.stats.binomtest(k, n, 0.5).pvalue``).
    """
    if n == 0:
        return math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    m = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(m + 1))
    return min(1.0, 2 * tail / 2 ** n)
