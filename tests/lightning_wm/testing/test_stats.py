"""Regression-suite maths on known counts: exact and score intervals, bootstrap, agreement scores."""

import math

import numpy as np
import pytest

from lightning_wm.testing.stats import (
    binary_agreement,
    bootstrap_mean,
    bootstrap_mean_difference,
    clopper_pearson,
    episodes_needed,
    kendall_tau,
    pearson,
    rate_difference_interval,
)


def test_clopper_pearson_on_known_counts():
    low, high = clopper_pearson(0, 200)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 200), abs=1e-12)  # closed form at k = 0
    assert high == pytest.approx(0.018275, abs=1e-6)
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(200, 200) == pytest.approx((0.025 ** (1 / 200), 1.0), abs=1e-12)
    assert clopper_pearson(5, 10, confidence=0.99)[0] < clopper_pearson(5, 10)[0]  # more confident is wider


@pytest.mark.parametrize("args", [(-1, 10), (11, 10), (0, 0), (1, 10, 1.0), (1, 10, 0.0)])
def test_clopper_pearson_rejects_bad_counts_and_confidence(args):
    with pytest.raises(ValueError, match="must be"):
        clopper_pearson(*args)


def test_episodes_needed_is_the_rule_of_three():
    assert 2990 <= episodes_needed(0.001) <= 3000
    for rate in (0.05, 0.01, 0.001):
        n = episodes_needed(rate)
        one_sided = 2 * 0.95 - 1  # the one-sided 95% upper bound is the two-sided 90% interval's upper end
        assert clopper_pearson(0, n, one_sided)[1] < rate <= clopper_pearson(0, n - 1, one_sided)[1]
    with pytest.raises(ValueError, match="rate"):
        episodes_needed(0.0)


def test_rate_difference_matches_newcombe_method_10():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10
    for counts, expected in [((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090)),
                             ((5, 56, 0, 29), (-0.0381, 0.1926)), ((10, 10, 0, 10), (0.6075, 1.0))]:
        assert rate_difference_interval(*counts) == pytest.approx(expected, abs=5e-5)


def test_rate_difference_contains_zero_only_for_equal_rates():
    low, high = rate_difference_interval(20, 200, 20, 200)
    assert low < 0 < high and low == pytest.approx(-high)
    low, high = rate_difference_interval(0, 200, 40, 200)
    assert low < high < 0 and low < -0.2 < high
    with pytest.raises(ValueError, match="k must be"):
        rate_difference_interval(3, 2, 0, 10)


def test_bootstrap_is_deterministic_for_a_seed_and_contains_the_difference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.5, 1.0, 300)
    result = bootstrap_mean_difference(a, b, seed=7)
    assert result == bootstrap_mean_difference(a, b, seed=7)
    assert result != bootstrap_mean_difference(a, b, seed=8)
    difference, low, high = result
    assert difference == pytest.approx(a.mean() - b.mean()) and low < difference < high
    assert 0 < low  # a's mean is higher by half a standard deviation over 300 episodes
    mean, low, high = bootstrap_mean(a, seed=3)
    assert mean == pytest.approx(a.mean()) and low < mean < high
    assert (high - low) / 2 == pytest.approx(1.96 * a.std() / math.sqrt(a.size), rel=0.15)


def test_paired_bootstrap_cancels_what_the_episodes_share():
    rng = np.random.default_rng(2)
    episode = rng.normal(0.0, 5.0, 200)  # how hard each episode is, shared by both policies
    a, b = episode + 0.3 + rng.normal(0, 0.1, 200), episode + rng.normal(0, 0.1, 200)
    _, paired_low, paired_high = bootstrap_mean_difference(a, b)
    _, low, high = bootstrap_mean_difference(a, b, paired=False)
    assert 0 < paired_low < 0.3 < paired_high and paired_high - paired_low < 0.1
    assert low < 0 < high  # resampled independently, the episodes' spread hides the difference
    unequal = bootstrap_mean_difference(a, b[:150])  # cannot pair: resampled independently
    assert unequal[1] < 0 < unequal[2]


def test_binary_agreement_on_a_hand_computed_table():
    # tp 20, fp 5, fn 10, tn 15: p_o = 35/50 = 0.7, p_e = (25*30 + 25*20)/50^2 = 0.5, kappa = 0.4
    predicted = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    actual = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    scores = binary_agreement(predicted, actual)
    assert {key: scores[key] for key in ("tp", "fp", "fn", "tn", "n")} == {"tp": 20, "fp": 5, "fn": 10, "tn": 15,
                                                                          "n": 50}
    assert scores["precision"] == pytest.approx(0.8) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["kappa"] == pytest.approx(0.4)
    assert binary_agreement(actual, actual)["kappa"] == pytest.approx(1.0)


def test_binary_agreement_is_none_where_undefined():
    nothing = binary_agreement([False, False], [False, False])
    assert nothing["precision"] is None and nothing["recall"] is None and nothing["kappa"] is None
    assert binary_agreement([False, True], [False, False])["recall"] is None
    assert binary_agreement([False, False], [True, False])["precision"] is None
    with pytest.raises(ValueError, match="items"):
        binary_agreement([True], [True, False])


def test_rank_and_linear_correlation():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant pairs, 1 discordant
    # tau-b with one tie on each side: 4 concordant of 6 pairs, 4 / sqrt((6 - 1) * (6 - 1)) = 0.8 (tau-c gives 0.75)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert kendall_tau([1], [1]) is None and kendall_tau([1, 2, 3], [5, 5, 5]) is None
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([1, 2, 3], [7, 7, 7]) is None
    with pytest.raises(ValueError, match="one length"):
        pearson([1, 2], [1, 2, 3])
