"""Win-rate statistics against hand arithmetic, Bradley–Terry against a direct scikit-learn fit and against
known strengths (recovery and CI coverage over many seeded synthetic logs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from visionprefer.errors import ConfigError
from visionprefer.evaluate.stats import (
    Outcome,
    bradley_terry,
    model_from_position,
    online_elo,
    outcome_from_scores,
    outcome_from_two_orders,
    wilson_interval,
    win_rate_summary,
)

Z95 = 1.959963984540054  # NormalDist().inv_cdf(0.975), written out


def outcomes(wins: int, ties: int, losses: int) -> list[int]:
    return [1] * wins + [0] * ties + [-1] * losses


# --- two models: win rates ---------------------------------------------------------------------------


def test_win_rate_summary_matches_hand_computation():
    s = win_rate_summary(outcomes(6, 2, 2), n_bootstrap=200)
    assert (s.wins, s.ties, s.losses, s.n) == (6, 2, 2, 10)
    assert s.win_rate == pytest.approx((6 + 0.5 * 2) / 10) == 0.7
    assert s.decisive_win_rate == pytest.approx(6 / 8) == 0.75
    # Wilson, p = 6/8, n = 8, z = 1.95996...: centre = (p + z²/16)/(1 + z²/8),
    # half = z/(1 + z²/8)·sqrt(p(1-p)/8 + z²/256).
    p, n, z = 0.75, 8, Z95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert s.wilson_ci == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert s.wilson_ci == pytest.approx((0.40928, 0.92852), abs=1e-5)  # the same numbers, worked on paper
    assert (s.confidence, s.n_bootstrap, s.seed) == (0.95, 200, 0)


def test_wilson_interval_edges_and_other_confidence():
    # No successes: the lower end is exactly 0 and the upper end is (z²/n)/(1 + z²/n).
    z2_n = Z95 * Z95 / 5
    low, high = wilson_interval(0, 5)
    assert low == 0.0
    assert high == pytest.approx(z2_n / (1 + z2_n), abs=1e-12)
    assert high == pytest.approx(0.43448, abs=1e-5)
    # All successes mirrors it.
    assert wilson_interval(5, 5) == pytest.approx((1 - high, 1.0), abs=1e-12)
    # 90%: z = 1.6448536..., p = 0.5, n = 100: centre 0.5, half z/(1 + z²/100)·sqrt(0.0025 + z²/40000).
    z = 1.6448536269514722
    half = z / (1 + z * z / 100) * math.sqrt(0.0025 + z * z / 40000)
    assert wilson_interval(50, 100, 0.90) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ConfigError):
        wilson_interval(3, 2)


def test_edge_cases_do_not_crash():
    empty = win_rate_summary([])
    assert (empty.wins, empty.ties, empty.losses, empty.n) == (0, 0, 0, 0)
    assert empty.win_rate is None and empty.decisive_win_rate is None
    assert empty.wilson_ci is None and empty.bootstrap_ci is None

    all_ties = win_rate_summary([0, 0, 0], n_bootstrap=100)
    assert all_ties.win_rate == 0.5
    assert all_ties.decisive_win_rate is None and all_ties.wilson_ci is None
    assert all_ties.bootstrap_ci == (0.5, 0.5)

    all_wins = win_rate_summary([Outcome.A_WINS] * 4, n_bootstrap=100)
    assert all_wins.win_rate == 1.0 and all_wins.bootstrap_ci == (1.0, 1.0)
    assert win_rate_summary([1, -1], n_bootstrap=0).bootstrap_ci is None


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"confidence": 1.0}, None),
        ({"confidence": 0}, None),
        ({"n_bootstrap": -1}, None),
        ({}, 2),
        ({}, True),
    ],
)
def test_invalid_arguments_are_config_errors(kwargs, bad):
    values = [1, 0] + ([bad] if bad is not None else [])
    with pytest.raises(ConfigError) as info:
        win_rate_summary(values, **kwargs)
    assert isinstance(info.value, ValueError)


def test_bootstrap_is_reproducible_with_a_seed_and_changes_with_another():
    values = outcomes(37, 11, 52)
    first = win_rate_summary(values, seed=7).bootstrap_ci
    assert win_rate_summary(values, seed=7).bootstrap_ci == first
    assert win_rate_summary(values, seed=8).bootstrap_ci != first
    # Paired bootstrap over prompts: the draws are rng.integers(0, N, N), one call per resample.
    rng = np.random.default_rng(7)
    points = (np.array(values) + 1) / 2
    rates = [points[rng.integers(0, 100, 100)].mean() for _ in range(1000)]
    assert first == pytest.approx(tuple(np.percentile(rates, [2.5, 97.5])), abs=1e-15)


def test_bootstrap_interval_is_close_to_the_normal_interval_for_many_prompts():
    # W=120, T=40, L=40: per-prompt points 1/0.5/0 with mean 0.7 and variance 0.65 - 0.49 = 0.16,
    # so the standard error is 0.4/sqrt(200) and the normal 95% interval 0.7 ± 1.96·0.028284.
    low, high = win_rate_summary(outcomes(120, 40, 40), n_bootstrap=4000, seed=3).bootstrap_ci
    se = 0.4 / math.sqrt(200)
    assert low == pytest.approx(0.7 - Z95 * se, abs=0.008)
    assert high == pytest.approx(0.7 + Z95 * se, abs=0.008)


# --- per-prompt judgments ----------------------------------------------------------------------------


def test_outcome_from_scores_with_a_tie_tolerance():
    assert outcome_from_scores(0.30, 0.25, 0.01) is Outcome.A_WINS
    assert outcome_from_scores(0.25, 0.30, 0.01) is Outcome.B_WINS
    assert outcome_from_scores(0.300, 0.295, 0.01) is Outcome.TIE
    assert outcome_from_scores(0.75, 0.5, 0.25) is Outcome.TIE  # a difference equal to the tolerance ties
    assert outcome_from_scores(1.0, 1.0) is Outcome.TIE
    assert outcome_from_scores(1.0, 2.0, higher_is_better=False) is Outcome.A_WINS
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ConfigError):
            outcome_from_scores(1.0, 2.0, bad)
    with pytest.raises(ConfigError):
        outcome_from_scores(math.nan, 2.0)


@pytest.mark.parametrize(("first", "second"), list(itertools.product(["A", "B", "tie", None], repeat=2)))
def test_two_orders_logic_table(first, second):
    expected = {("A", "A"): Outcome.A_WINS, ("B", "B"): Outcome.B_WINS}.get((first, second), Outcome.TIE)
    assert outcome_from_two_orders(first, second) is expected


def test_positions_map_back_to_models():
    # Order 1 shows model A first; order 2 shows model B first, so the judge's "A" there is model B.
    answers = ("A", "B", "tie", None)
    assert [model_from_position(x, a_shown_first=True) for x in answers] == ["A", "B", "tie", None]
    assert [model_from_position(x, a_shown_first=False) for x in answers] == ["B", "A", "tie", None]
    # A judge that always picks the first image: "A" in both orders is A then B -> a tie, not a win.
    first = model_from_position("A", a_shown_first=True)
    second = model_from_position("A", a_shown_first=False)
    assert outcome_from_two_orders(first, second) is Outcome.TIE
    with pytest.raises(ConfigError):
        outcome_from_two_orders("a", "A")
    with pytest.raises(ConfigError):
        model_from_position("left", a_shown_first=True)


# --- many models: online Elo -------------------------------------------------------------------------


def test_online_elo_equals_hand_arithmetic():
    log = [("x", "y", "model_a"), ("y", "z", "tie"), ("z", "x", "model_b")]
    # 1. x (1000) beats y (1000): expected 0.5 each, x += 4·0.5, y -= 4·0.5.
    x, y, z = 1002.0, 998.0, 1000.0
    # 2. y (998) ties z (1000): e_y = 1/(1 + 10^(2/400)).
    e_y = 1 / (1 + 10 ** (2 / 400))
    y, z = y + 4 * (0.5 - e_y), z + 4 * (0.5 - (1 - e_y))
    # 3. z loses to x: s_z = 0, e_z = 1/(1 + 10^((x - z)/400)).
    e_z = 1 / (1 + 10 ** ((x - z) / 400))
    z, x = z + 4 * (0 - e_z), x + 4 * (1 - (1 - e_z))
    ratings = online_elo(log)
    assert ratings == pytest.approx({"x": x, "y": y, "z": z}, abs=1e-9)
    assert ratings == pytest.approx({"x": 1003.9884, "y": 998.0115, "z": 998.0001}, abs=1e-4)
    assert list(ratings)[0] == "x"
    assert sum(ratings.values()) == pytest.approx(3000)  # K·(s - e) transfers are zero-sum
    as_dicts = [{"model_a": a, "model_b": b, "winner": w} for a, b, w in log]
    assert online_elo(as_dicts) == ratings
    assert online_elo([]) == {}


def test_invalid_battles_are_config_errors():
    with pytest.raises(ConfigError, match="winner"):
        online_elo([("x", "y", "A")])
    with pytest.raises(ConfigError, match="itself"):
        bradley_terry([("x", "x", "tie")])
    with pytest.raises(ConfigError, match="lacks"):
        online_elo([{"model_a": "x", "model_b": "y"}])


# --- many models: Bradley–Terry ----------------------------------------------------------------------


def genai_arena_fit(log: list[tuple[str, str, str]]) -> dict[str, float]:
    """The fit written out the way GenAI-Arena builds it: duplicated battles, no merged rows."""
    from sklearn.linear_model import LogisticRegression

    models = list(dict.fromkeys([a for a, _, _ in log] + [b for _, b, _ in log]))
    doubled = log + log
    x = np.zeros((len(doubled), len(models)))
    y = np.zeros(len(doubled))
    for i, (a, b, winner) in enumerate(doubled):
        x[i, models.index(a)] = math.log(10)
        x[i, models.index(b)] = -math.log(10)
        is_tie = winner in ("tie", "tie (bothbad)")
        y[i] = 1.0 if winner == "model_a" or (is_tie and i < len(log)) else 0.0
    coef = LogisticRegression(fit_intercept=False).fit(x, y).coef_[0]
    return dict(zip(models, 400 * coef + 1000, strict=True))


TINY_LOG = [
    ("p", "q", "model_a"),
    ("q", "r", "model_a"),
    ("r", "p", "tie"),
    ("p", "r", "model_a"),
    ("q", "p", "tie (bothbad)"),
    ("r", "q", "model_b"),
    ("p", "q", "model_b"),
    ("s", "p", "model_b"),
    ("s", "r", "tie"),
    ("q", "s", "model_a"),
]


def test_bradley_terry_matches_a_direct_sklearn_fit():
    expected = genai_arena_fit(TINY_LOG)
    result = bradley_terry(TINY_LOG, n_bootstrap=50)
    assert {m: r.rating for m, r in result.items()} == pytest.approx(expected, abs=1e-6)
    assert list(result) == sorted(expected, key=lambda m: -expected[m])
    # Coefficients sum to zero under the L2 penalty (every row sums to zero): ratings average 1000.
    assert np.mean([r.rating for r in result.values()]) == pytest.approx(1000, abs=1e-9)
    assert {m: r.n_battles for m, r in result.items()} == {"p": 6, "q": 6, "r": 5, "s": 3}
    for r in result.values():
        assert r.ci_low <= r.ci_high


def test_bradley_terry_tie_encoding_and_single_target():
    # Only ties: each is one A win and one B win, so both models stay at exactly 1000.
    ties = bradley_terry([("x", "y", "tie"), ("y", "x", "tie (bothbad)")], n_bootstrap=0)
    assert {m: r.rating for m, r in ties.items()} == pytest.approx({"x": 1000, "y": 1000}, abs=1e-9)
    # One battle: every row has target 1, which sklearn alone would refuse. The optimum of
    # ½(w_x² + w_y²) + 2·log(1 + exp(-ln10·(w_x - w_y))) (C = 1, two copies) has w_x = -w_y = w
    # with w = 2·ln10·σ(-2·ln10·w), solved here by bisection.
    one = bradley_terry([("x", "y", "model_a")], n_bootstrap=0)
    lo, hi = 0.0, 5.0
    for _ in range(100):
        w = (lo + hi) / 2
        lo, hi = (w, hi) if w < 2 * math.log(10) / (1 + math.exp(2 * math.log(10) * w)) else (lo, w)
    assert one["x"].rating == pytest.approx(1000 + 400 * w, abs=0.05)
    assert one["y"].rating == pytest.approx(1000 - 400 * w, abs=0.05)
    assert one["x"].ci_low is None and one["x"].ci_high is None
    assert bradley_terry([]) == {}


def test_bradley_terry_bootstrap_is_reproducible_and_uses_only_resamples_with_the_model():
    log = TINY_LOG * 3
    first = bradley_terry(log, n_bootstrap=60, seed=1)
    assert bradley_terry(log, n_bootstrap=60, seed=1) == first
    assert bradley_terry(log, n_bootstrap=60, seed=2) != first
    # "rare" is in one battle of 31: absent from about e^-1 of the resamples, yet it gets an interval.
    rare = bradley_terry([*log, ("rare", "p", "model_a")], n_bootstrap=60, seed=1)["rare"]
    assert rare.ci_low is not None and rare.ci_low <= rare.ci_high


TRUE_RATINGS = {"m850": 850.0, "m950": 950.0, "m1000": 1000.0, "m1050": 1050.0, "m1150": 1150.0}
N_DRAWS = 50
N_BATTLES = 3000
N_RESAMPLES = 100  # library default is 1000; 100 keeps this test to a few seconds of CPU per 10 draws


def synthetic_log(rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """Battles uniform over unordered pairs, side order random, P(A wins) = 1/(1 + 10^((R_B - R_A)/400))."""
    names = list(TRUE_RATINGS)
    pairs = list(itertools.combinations(names, 2))
    log = []
    picks, swaps, draws = (
        rng.integers(0, len(pairs), N_BATTLES),
        rng.random(N_BATTLES) < 0.5,
        rng.random(N_BATTLES),
    )
    for k, swap, u in zip(picks, swaps, draws, strict=True):
        a, b = pairs[k][::-1] if swap else pairs[k]
        p_a = 1 / (1 + 10 ** ((TRUE_RATINGS[b] - TRUE_RATINGS[a]) / 400))
        log.append((a, b, "model_a" if u < p_a else "model_b"))
    return log


def test_bradley_terry_recovers_known_strengths_and_its_cis_cover_them():
    # No ties here: GenAI-Arena scores a tie as half a win for each side, so ties drawn independently of
    # strength would pull the fitted gaps below the true ones. The true ratings average 1000 and the fit
    # is centred at 1000 by construction, so ratings and intervals are compared with the true ratings as
    # they are. With 3000 battles the L2 shrinkage towards 1000 is a fraction of a rating point.
    true_order = sorted(TRUE_RATINGS, key=lambda m: -TRUE_RATINGS[m])
    covered = total = 0
    max_error = 0.0
    for draw in range(N_DRAWS):
        log = synthetic_log(np.random.default_rng(10_000 + draw))
        result = bradley_terry(log, n_bootstrap=N_RESAMPLES, seed=draw)
        assert list(result) == true_order, f"draw {draw}: {result}"
        for model, r in result.items():
            covered += r.ci_low <= TRUE_RATINGS[model] <= r.ci_high
            total += 1
            max_error = max(max_error, abs(r.rating - TRUE_RATINGS[model]))
    rate = covered / total
    print(f"BT 95% CI coverage {covered}/{total} = {rate:.3f}; max |rating - true| {max_error:.1f}")
    assert 0.85 <= rate <= 0.99
    assert max_error < 40
