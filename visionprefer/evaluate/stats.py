"""Statistics of the win-rate evaluator: pure functions over plain data (numpy, scikit-learn).

Two models on shared prompts
    Every prompt gives one :class:`Outcome` for model A against model B: ``+1`` A wins, ``0`` tie, ``-1``
    B wins. It comes from reward scores with a tie tolerance (:func:`outcome_from_scores`) or from a
    pairwise judge asked in both orders (:func:`outcome_from_two_orders`). :func:`win_rate_summary` turns
    the outcomes into wins/ties/losses, the win rate (W + 0.5·T)/N, the decisive win rate W/(W+L) with a
    Wilson score interval, and a percentile CI of the win rate from a paired bootstrap over prompts.

Many models
    A battle is ``(model_a, model_b, winner)`` with ``winner`` one of :data:`WINNERS` (GenAI-Arena's
    vocabulary), given as a tuple or as a mapping with those three keys. :func:`bradley_terry` fits
    GenAI-Arena's Bradley–Terry ratings with bootstrap CIs; :func:`online_elo` replays the log with the
    online Elo update, for comparison.

Invalid arguments (an outcome outside {-1, 0, 1}, an unknown winner, a confidence outside (0, 1), ...)
raise :class:`~visionprefer.errors.ConfigError`, which is also a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from statistics import NormalDist

import numpy as np

from ..errors import ConfigError

ELO_BASE = 10.0
ELO_SCALE = 400.0
INITIAL_RATING = 1000.0
ELO_K = 4.0
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
"""Values of a battle's ``winner``; both kinds of tie are treated alike."""

# Score of model A in a battle, per winner value.
_A_SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


class Outcome(IntEnum):
    """One prompt's result for model A against model B (an ``int``: ``+1``, ``0`` or ``-1``)."""

    B_WINS = -1
    TIE = 0
    A_WINS = 1


# ---------------------------------------------------------------------------------------------------
# Per-prompt judgments


def outcome_from_scores(
    score_a: float, score_b: float, tie_tolerance: float = 0.0, *, higher_is_better: bool = True
) -> Outcome:
    """The outcome of one prompt judged by a reward score.

    A wins when its score beats B's by **more than** ``tie_tolerance`` (``score_a - score_b >
    tie_tolerance`` when higher is better, ``score_b - score_a > tie_tolerance`` otherwise), B wins in the
    mirror case, and anything else — a difference of at most ``tie_tolerance`` in absolute value — is a
    tie. ``tie_tolerance`` is in the scorer's own units and must be >= 0; NaN scores are rejected.
    """
    if not tie_tolerance >= 0 or math.isinf(tie_tolerance):  # also rejects NaN
        raise ConfigError(f"tie_tolerance must be a finite number >= 0, got {tie_tolerance!r}")
    if math.isnan(score_a) or math.isnan(score_b):
        raise ConfigError(f"scores must not be NaN, got score_a={score_a!r}, score_b={score_b!r}")
    margin = score_a - score_b if higher_is_better else score_b - score_a
    if margin > tie_tolerance:
        return Outcome.A_WINS
    if -margin > tie_tolerance:
        return Outcome.B_WINS
    return Outcome.TIE


_JUDGE_ANSWERS = ("A", "B", "tie")


def model_from_position(answer: str | None, *, a_shown_first: bool) -> str | None:
    """Map a pairwise judge's positional answer back to a model label.

    The judge sees two images labelled "A" (first) and "B" (second) and answers ``"A"``, ``"B"`` or
    ``"tie"``. With model A's image shown first the answer already names the model; with model B's image
    shown first, ``"A"`` means model B and ``"B"`` means model A. ``"tie"`` and ``None`` (no valid answer)
    are returned unchanged.
    """
    if answer is not None and answer not in _JUDGE_ANSWERS:
        raise ConfigError(f'a judge answer must be "A", "B", "tie" or None, got {answer!r}')
    if a_shown_first or answer in (None, "tie"):
        return answer
    return "B" if answer == "A" else "A"


def outcome_from_two_orders(first_order_winner: str | None, second_order_winner: str | None) -> Outcome:
    """The outcome of one prompt judged by a pairwise judge asked in both orders.

    Both arguments are **model labels**, already mapped back from image positions (see
    :func:`model_from_position`): ``"A"`` means model A won, ``"B"`` model B, ``"tie"`` a tie, ``None``
    no valid answer. ``first_order_winner`` is the judge's verdict with model A's image shown first,
    ``second_order_winner`` with model B's image shown first.

    A model wins only when both orders name it; any disagreement, any tie and any missing answer is a
    tie, so a judge that always prefers one position yields ties, not wins:

    ======  ======  =======
    first   second  outcome
    ======  ======  =======
    A       A       A_WINS
    B       B       B_WINS
    A       B       TIE
    B       A       TIE
    tie     any     TIE
    None    any     TIE
    ======  ======  =======
    """
    for name, value in (("first", first_order_winner), ("second", second_order_winner)):
        if value is not None and value not in _JUDGE_ANSWERS:
            raise ConfigError(f'{name}_order_winner must be "A", "B", "tie" or None, got {value!r}')
    if first_order_winner == second_order_winner == "A":
        return Outcome.A_WINS
    if first_order_winner == second_order_winner == "B":
        return Outcome.B_WINS
    return Outcome.TIE


# ---------------------------------------------------------------------------------------------------
# Two models: win rates


@dataclass(frozen=True)
class WinRateSummary:
    """Model A against model B over N prompts.

    Attributes:
        wins, ties, losses: prompts won by A, tied, won by B (W, T, L); ``n`` = W + T + L.
        win_rate: (W + 0.5·T) / N; ``None`` when N = 0.
        decisive_win_rate: W / (W + L), ties left out; ``None`` when W + L = 0.
        wilson_ci: Wilson score interval of ``decisive_win_rate`` (no continuity correction) at
            ``confidence``; ``None`` when W + L = 0.
        bootstrap_ci: percentile interval of ``win_rate`` at ``confidence`` from ``n_bootstrap``
            resamples of the N prompts with replacement (paired: a prompt's outcome is drawn as a whole);
            ``None`` when N = 0 or ``n_bootstrap`` = 0.
        confidence, n_bootstrap, seed: the settings used.
    """

    wins: int
    ties: int
    losses: int
    n: int
    win_rate: float | None
    decisive_win_rate: float | None
    wilson_ci: tuple[float, float] | None
    bootstrap_ci: tuple[float, float] | None
    confidence: float
    n_bootstrap: int
    seed: int


def normal_quantile(confidence: float) -> float:
    """z such that a standard normal lies in [-z, z] with probability ``confidence`` (1.96 for 0.95)."""
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion, without continuity correction.

    With p = successes / trials, n = trials and z = :func:`normal_quantile` (``confidence``)::

        centre    = (p + z²/(2n)) / (1 + z²/n)
        half      = z / (1 + z²/n) · sqrt(p(1 - p)/n + z²/(4n²))
        interval  = (centre - half, centre + half)

    Returns ``None`` when ``trials`` is 0 (the proportion is undefined).
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ConfigError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")
    z = normal_quantile(confidence)
    if trials == 0:
        return None
    p = successes / trials
    z2_n = z * z / trials
    centre = (p + z2_n / 2) / (1 + z2_n)
    half = z / (1 + z2_n) * math.sqrt(p * (1 - p) / trials + z2_n / (4 * trials))
    # Rounding can push an end a hair past [0, 1] when p is 0 or 1.
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate_summary(
    outcomes: Iterable[int], *, confidence: float = 0.95, n_bootstrap: int = 1000, seed: int = 0
) -> WinRateSummary:
    """Summarise per-prompt outcomes of model A against model B.

    Args:
        outcomes: one value per prompt: ``+1`` A wins, ``0`` tie, ``-1`` B wins (ints or :class:`Outcome`).
        confidence: coverage of both intervals, in (0, 1).
        n_bootstrap: bootstrap resamples; 0 skips the bootstrap. The design asks for at least 1,000.
        seed: seed of ``numpy.random.default_rng``; the same outcomes and seed give the same interval.

    The bootstrap draws N prompt indices with replacement per resample (one ``rng.integers(0, N, N)``
    call each, in order), computes the win rate of each resample, and takes the ``(1 - confidence)/2``
    and ``(1 + confidence)/2`` quantiles of those rates (``numpy.percentile``, linear interpolation).
    N = 0 and W + L = 0 give ``None`` for the undefined numbers, not an error.
    """
    _check_confidence(confidence)
    _check_n_bootstrap(n_bootstrap)
    values = []
    for i, o in enumerate(outcomes):
        if isinstance(o, bool) or o not in (-1, 0, 1):
            raise ConfigError(f"outcome {i} must be +1 (A wins), 0 (tie) or -1 (B wins), got {o!r}")
        values.append(int(o))
    outcome = np.asarray(values, dtype=np.int64)
    n = outcome.size
    wins, ties = int(np.sum(outcome == 1)), int(np.sum(outcome == 0))
    losses = n - wins - ties
    decisive = wins + losses
    bootstrap_ci = None
    if n and n_bootstrap:
        points = (outcome + 1) / 2  # 1 for a win, 0.5 for a tie, 0 for a loss
        rng = np.random.default_rng(seed)
        rates = np.array([points[rng.integers(0, n, n)].mean() for _ in range(n_bootstrap)])
        bootstrap_ci = _percentile_interval(rates, confidence)
    return WinRateSummary(
        wins=wins,
        ties=ties,
        losses=losses,
        n=n,
        win_rate=(wins + 0.5 * ties) / n if n else None,
        decisive_win_rate=wins / decisive if decisive else None,
        wilson_ci=wilson_interval(wins, decisive, confidence),
        bootstrap_ci=bootstrap_ci,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------------
# Many models: Bradley–Terry and online Elo over a battle log


@dataclass(frozen=True)
class ModelRating:
    """One model's Bradley–Terry rating.

    Attributes:
        rating: fitted on the whole battle log (not a bootstrap median).
        ci_low, ci_high: percentile interval over the bootstrap refits in which the model took part;
            ``None`` when there was no bootstrap.
        n_battles: battles in the log that involve the model.
    """

    rating: float
    ci_low: float | None
    ci_high: float | None
    n_battles: int


Battle = tuple[str, str, str] | Mapping[str, str]


def bradley_terry(
    battles: Sequence[Battle], *, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, ModelRating]:
    """Bradley–Terry ratings exactly as GenAI-Arena computes them, with bootstrap percentile CIs.

    The fit (GenAI-Arena ``compute_elo_mle_with_tie``): every battle appears twice; its feature row has
    +ln 10 in model A's column and -ln 10 in model B's column; the target is 1 in both copies when A wins,
    0 in both when B wins, and 1 in the first copy and 0 in the second for a tie of either kind.
    ``sklearn.linear_model.LogisticRegression(fit_intercept=False)`` with its defaults (L2 penalty,
    C = 1.0, lbfgs, tol 1e-4, max_iter 100) fits these rows and rating = 400·coef + 1000. Because every row
    sums to zero, the L2 penalty makes the coefficients sum to zero: the ratings average exactly 1000,
    and they are shrunk towards 1000 by an amount that vanishes as battles accumulate.

    Identical rows are passed once with their count as ``sample_weight``, which leaves scikit-learn's
    objective unchanged (the same fit as the duplicated design, to solver precision). When all rows share
    one target, which scikit-learn refuses, half of one row's weight is given to its mirror ``(-x, 1 - y)``,
    which has the same loss. BLAS runs single-threaded during the fits: on problems this small its
    threads only add overhead (about 7x on a 2-core machine). GenAI-Arena's shift that pins
    ``llama-13b`` at 800, a leftover of the chat arena, is not applied.

    Bootstrap: ``n_bootstrap`` times, draw len(battles) battles with replacement
    (``numpy.random.default_rng(seed).integers``) and refit. A model absent from a resample has no
    rating in it (as in GenAI-Arena, where it is missing from that round); its CI comes from the
    resamples it took part in, as the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles
    (``numpy.percentile``, linear interpolation).

    Args:
        battles: ``(model_a, model_b, winner)`` tuples or mappings with those keys; ``winner`` one of
            :data:`WINNERS`. A model may not battle itself.

    Returns:
        model → :class:`ModelRating`, highest rating first; ``{}`` for an empty log.
    """
    _check_confidence(confidence)
    _check_n_bootstrap(n_bootstrap)
    models, a, b, a_score = _read_battles(battles)
    if not models:
        return {}
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n, p = a.size, len(models)
    # One row per (model_a, model_b, target); row_of[j] is the row of copy j (copies 1..n, then n+1..2n).
    keys = np.concatenate(
        [np.stack([a, b, a_score >= 0.5], axis=1), np.stack([a, b, a_score == 1.0], axis=1)]
    ).astype(np.int64)
    rows, row_of = np.unique(keys, axis=0, return_inverse=True)
    row_of = row_of.reshape(-1)
    features = np.zeros((len(rows), p))
    features[np.arange(len(rows)), rows[:, 0]] = math.log(ELO_BASE)
    features[np.arange(len(rows)), rows[:, 1]] = -math.log(ELO_BASE)
    targets = rows[:, 2].astype(np.float64)

    def fit(battle_counts: np.ndarray) -> np.ndarray:
        weights = np.bincount(row_of, weights=np.tile(battle_counts, 2), minlength=len(rows))
        used = weights > 0
        x, y, w = features[used], targets[used], weights[used]
        if y.min() == y.max():  # one class: half of row 0's weight moves to its mirror (-x, 1 - y)
            x = np.vstack([x, -x[:1]])
            y = np.append(y, 1.0 - y[0])
            w = np.append(w, w[0] / 2)
            w[0] /= 2
        model = LogisticRegression(fit_intercept=False)
        model.fit(x, y, sample_weight=w)
        return ELO_SCALE * model.coef_[0] + INITIAL_RATING

    with threadpool_limits(limits=1, user_api="blas"):
        ratings = fit(np.ones(n))
        boot = np.empty((n_bootstrap, p))
        rng = np.random.default_rng(seed)
        for r in range(n_bootstrap):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
            boot[r] = fit(counts)
            present = np.bincount(a, weights=counts, minlength=p) + np.bincount(
                b, weights=counts, minlength=p
            )
            boot[r, present == 0] = np.nan

    n_battles = np.bincount(a, minlength=p) + np.bincount(b, minlength=p)
    result = {}
    for j in sorted(range(p), key=lambda j: -ratings[j]):
        column = boot[:, j][~np.isnan(boot[:, j])]
        low, high = _percentile_interval(column, confidence) if column.size else (None, None)
        result[models[j]] = ModelRating(float(ratings[j]), low, high, int(n_battles[j]))
    return result


def online_elo(battles: Sequence[Battle], *, k: float = ELO_K) -> dict[str, float]:
    """Online Elo over the battle log, in row order (GenAI-Arena ``compute_elo``).

    Every model starts at 1000. For a battle of A (rating r_a) against B (r_b), the expected scores are
    e_a = 1 / (1 + 10^((r_b - r_a)/400)) and e_b = 1 / (1 + 10^((r_a - r_b)/400)); A scores s_a = 1 for a
    win, 0.5 for a tie (either kind), 0 for a loss; then r_a += k·(s_a - e_a) and r_b += k·(1 - s_a - e_b),
    with K = 4 by default. The result depends on the order of the log, unlike :func:`bradley_terry`.

    Returns:
        model → rating, highest first; ``{}`` for an empty log.
    """
    models, a, b, a_score = _read_battles(battles)
    rating = [INITIAL_RATING] * len(models)
    for i, j, s_a in zip(a.tolist(), b.tolist(), a_score.tolist(), strict=True):
        r_a, r_b = rating[i], rating[j]
        e_a = 1 / (1 + ELO_BASE ** ((r_b - r_a) / ELO_SCALE))
        e_b = 1 / (1 + ELO_BASE ** ((r_a - r_b) / ELO_SCALE))
        rating[i] = r_a + k * (s_a - e_a)
        rating[j] = r_b + k * (1 - s_a - e_b)
    order = sorted(range(len(models)), key=lambda m: -rating[m])
    return {models[m]: rating[m] for m in order}


# ---------------------------------------------------------------------------------------------------
# Helpers


def _read_battles(battles: Sequence[Battle]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Models (model_a values in order of first appearance, then new model_b values, as GenAI-Arena's
    ``pd.concat([model_a, model_b]).unique()``), A's and B's indices, and A's score per battle."""
    triples = []
    for i, battle in enumerate(battles):
        if isinstance(battle, Mapping):
            missing = [key for key in ("model_a", "model_b", "winner") if key not in battle]
            if missing:
                raise ConfigError(f"battle {i} lacks {', '.join(missing)}")
            triple = (battle["model_a"], battle["model_b"], battle["winner"])
        else:
            triple = tuple(battle)
            if len(triple) != 3:
                raise ConfigError(f"battle {i} must be (model_a, model_b, winner), got {battle!r}")
        if triple[2] not in _A_SCORE:
            raise ConfigError(f"battle {i}: winner must be one of {', '.join(WINNERS)}, got {triple[2]!r}")
        if triple[0] == triple[1]:
            raise ConfigError(f"battle {i}: model {triple[0]!r} cannot battle itself")
        triples.append(triple)
    index: dict[str, int] = {}
    for column in (0, 1):
        for triple in triples:
            index.setdefault(triple[column], len(index))
    a = np.array([index[t[0]] for t in triples], dtype=np.int64)
    b = np.array([index[t[1]] for t in triples], dtype=np.int64)
    a_score = np.array([_A_SCORE[t[2]] for t in triples], dtype=np.float64)
    return list(index), a, b, a_score


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.percentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_n_bootstrap(n_bootstrap: int) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
