"""Interval and agreement maths for the policy regression suite (`lwm regress`).

A regression check compares a candidate policy with a baseline over a finite number of
episodes, so every rate and mean it reports comes with a confidence interval: exact binomial
intervals for event rates (collisions, off-road), Newcombe's interval for the difference of two
rates, percentile bootstrap intervals for per-episode means, and agreement scores (Cohen's kappa,
Kendall's tau, Pearson's r) between two sets of judgements. numpy and scipy only, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_counts(k: int, n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n={n}], got {k}")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided (Clopper-Pearson) interval of a binomial rate: k events in n trials.

    low = Beta(alpha/2; k, n-k+1) and high = Beta(1-alpha/2; k+1, n-k) quantiles, alpha = 1 - confidence,
    with low = 0 when k == 0 and high = 1 when k == n. Returns (low, high), both rates in [0, 1].
    """
    _check_counts(k, n)
    _check_confidence(confidence)
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def episodes_needed(rate: float, confidence: float = 0.95) -> int:
    """The fewest episodes n after which 0 events shows, at `confidence`, that the true rate is below `rate`.

    The claim "rate < r" is one-sided, so the bound is the one-sided Clopper-Pearson upper bound
    1 - (1 - confidence)^(1/n) (the upper end of `clopper_pearson(0, n, 2 * confidence - 1)`); the
    smallest n with that bound < r is floor(ln(1 - confidence) / ln(1 - r)) + 1: about 3 / r at 95%
    (the "rule of three", 2,995 for r = 0.001). A gate using this n must compare the same one-sided
    bound: the two-sided `clopper_pearson(0, n, confidence)` upper end is wider (0.0183 for 0 of 200).
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    _check_confidence(confidence)
    return math.floor(math.log(1 - confidence) / math.log1p(-rate)) + 1


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) of k events in n trials, z the normal quantile."""
    p = k / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of p1 - p2 for two independent rates, k1 of n1 and k2 of n2 (e.g. candidate vs baseline).

    Newcombe's hybrid score method (Newcombe 1998, method 10): with (l_i, u_i) the Wilson score
    interval of p_i = k_i / n_i and d = p1 - p2,
    low = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    Unlike the Wald interval it stays inside [-1, 1] and is not degenerate at 0 or n events.
    Returns (low, high), differences of rates in [-1, 1].
    """
    _check_counts(k1, n1)
    _check_counts(k2, n2)
    _check_confidence(confidence)
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1, z)
    l2, u2 = _wilson(k2, n2, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def _as_sample(values: Sequence[float], name: str) -> np.ndarray:
    sample = np.asarray(values, dtype=np.float64)
    if sample.ndim != 1 or sample.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {sample.shape}")
    return sample


def _percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


def bootstrap_mean(
    a: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a per-episode value a [N] with its percentile bootstrap interval.

    Each of `resamples` resamples draws N episodes with replacement; (low, high) are the
    alpha/2 and 1 - alpha/2 quantiles of their means. Deterministic for a seed (numpy Generator).
    Returns (mean, low, high) in a's unit.
    """
    _check_confidence(confidence)
    _check_resamples(resamples)
    sample = _as_sample(a, "a")
    rng = np.random.default_rng(seed)
    means = sample[rng.integers(0, sample.size, size=(resamples, sample.size))].mean(axis=1)
    return (float(sample.mean()), *_percentile_interval(means, confidence))


def bootstrap_mean_difference(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    *,
    paired: bool = True,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) of per-episode values a [N] and b [M] with its percentile bootstrap interval.

    Paired when `paired` and N == M: a[i] and b[i] come from the same episode (the candidate and the
    baseline run the same seeds), so each resample draws episode indices once for both, and what
    the episodes share cancels out. Otherwise a and b are resampled independently. (low, high) are
    the alpha/2 and 1 - alpha/2 quantiles of the resampled differences; deterministic for a seed.
    Returns (difference, low, high) in the values' unit.
    """
    _check_confidence(confidence)
    _check_resamples(resamples)
    first, second = _as_sample(a, "a"), _as_sample(b, "b")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, first.size, size=(resamples, first.size))
    joint = paired and first.size == second.size
    rows_b = rows if joint else rng.integers(0, second.size, size=(resamples, second.size))
    differences = first[rows].mean(axis=1) - second[rows_b].mean(axis=1)
    return (float(first.mean() - second.mean()), *_percentile_interval(differences, confidence))


def binary_agreement(predicted: Sequence[bool], actual: Sequence[bool]) -> dict[str, int | float | None]:
    """Confusion counts and agreement of two judgements of the same N items (e.g. a check's flag vs a label).

    Returns {tp, fp, fn, tn, n} (counts), precision = tp / (tp + fp) (None with no predicted
    positives), recall = tp / (tp + fn) (None with no actual positives) and Cohen's kappa =
    (p_o - p_e) / (1 - p_e), p_o the observed agreement and p_e the agreement expected from the
    two marginals; None when p_e == 1 (both sides constant and equal) or N == 0.
    """
    if len(predicted) != len(actual):
        raise ValueError(f"predicted has {len(predicted)} items but actual has {len(actual)}")
    pairs = [(bool(p), bool(t)) for p, t in zip(predicted, actual)]
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    fn = sum(t and not p for p, t in pairs)
    n = len(pairs)
    tn = n - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": n,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "kappa": _cohen_kappa(tp, fp, fn, tn)}


def _cohen_kappa(tp: int, fp: int, fn: int, tn: int) -> float | None:
    n = tp + fp + fn + tn
    if n == 0:
        return None
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    return x, y


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two scorings a [N] and b [N] of the same items (ties corrected), in [-1, 1].

    1 when both rank the items in the same order, -1 when reversed. None with fewer than 2 items
    or when undefined (NaN: one side constant).
    """
    x, y = _paired(a, b)
    if x.size < 2:
        return None
    tau = float(stats.kendalltau(x, y, variant="b").statistic)
    return None if math.isnan(tau) else tau


def pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pearson's correlation r between a [N] and b [N], in [-1, 1]: cov(a, b) / (std(a) std(b)).

    None when either side is constant (including N < 2), where r is undefined.
    """
    x, y = _paired(a, b)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
