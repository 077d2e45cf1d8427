"""Agreement of a scorer or judge with human preferences on a public test set, under a named protocol.

Inputs: the items of a test set (:mod:`visionprefer.evaluate.testsets`) and one of

* per-image **scores**, a mapping ``{(item_id, image_index): score}`` (and/or ``{image_id: score}``) as
  :func:`load_scores` reads from a JSON/JSONL file computed anywhere, or a callable scorer;
* pairwise **verdicts** of a judge (:func:`load_verdicts`), optionally asked in both orders.

Every pair of images of an item is compared: the human side from the item's ranking (lower is better,
equal ranks are a human tie), the predicted side from the scores (:func:`~.stats.outcome_from_scores`
with ``tie_tolerance``, 0 = only equal scores tie) or from the verdicts (both orders combined by
:func:`~.stats.outcome_from_two_orders`: a side wins only when both orders name it). A pair with a missing
image or score is skipped and counted (a human tie without a score is still counted as a human tie by
the protocols that leave human ties out).

Protocols (:data:`PROTOCOLS`), each named in every result:

``imagereward_micro``
    ImageReward ``test.py`` (``acc``): correct / counted over all pairs of all items pooled; human ties
    skipped; a predicted tie is counted and wrong.
``hpsv2_macro``
    HPS v2 ``evaluation.py --data-type ImageReward`` (``calc_ImageReward``): the same per-pair rule, the
    accuracy computed per item, then averaged over items. An item with no decisive pair (all human ties,
    where the official code divides by zero) is left out and counted.
``hpsv2_ranking``
    HPS v2 ``evaluation.py --data-type test`` (``inversion_score``): per item 1 − discordant / all pairs,
    averaged over items. A human tie is never discordant (it counts for the scorer, as in the official
    code); a predicted tie on a decisive pair is discordant (the official argsort breaks it arbitrarily).
``pairwise_excl_ties``
    Pick-a-Pic / HPD v3: accuracy over pairs without a human tie, a predicted tie wrong (micro).
``pickscore_tie_credit``
    PickScore ``eval_preference_predictor.py``: every pair, human ties included; predicted tie when
    \\|p0 − p1\\| ≤ ``tie_tolerance`` with (p0, p1) = softmax(s0, s1); credit 1 for an exact match (tie =
    tie included), 0.5 when exactly one side is a tie, 0 otherwise; mean credit.
``mjbench``
    MJ-Bench: accuracy "with ties" (human ties dropped, a predicted tie — \\|s0 − s1\\| ≤ ``tie_tolerance``
    — wrong; the headline value) and "without ties" (predicted ties dropped too).
``tifa_correlation``
    TIFA160: Spearman ρ (Pearson of average ranks), Kendall τ-b and Pearson r between scores and the human
    Likert averages, over all images. (TIFA's notebook prints Pearson under the name "Spearman".)

Intervals: a Wilson interval (:func:`~.stats.wilson_interval`) of the pair-level proportion for the
binomial protocols (micro accuracies, position consistency); for every protocol a percentile bootstrap
that resamples **items** with replacement and recomputes the protocol's statistic (the draws and the
percentile rule of :func:`~.stats.win_rate_summary`: ``numpy.random.default_rng(seed)``, one
``integers(0, N, N)`` per resample, so with one pair per item the interval equals ``win_rate_summary``'s
on the ±1 outcomes). Pure numpy; no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SourceError
from .stats import (
    _check_confidence,
    _check_n_bootstrap,
    _percentile_interval,
    model_from_position,
    outcome_from_scores,
    outcome_from_two_orders,
    wilson_interval,
)
from .testsets import Item

PROTOCOLS: dict[str, str] = {
    "imagereward_micro": "ImageReward test.py: micro average over all pairs of all prompts; human ties "
    "skipped, predicted ties wrong",
    "hpsv2_macro": "HPS v2 evaluation.py (ImageReward mode): mean over prompts of per-prompt pair accuracy; "
    "human ties skipped, predicted ties wrong",
    "hpsv2_ranking": "HPS v2 evaluation.py (test mode): mean over prompts of 1 - discordant/all pairs; human "
    "ties never discordant, predicted ties discordant",
    "pairwise_excl_ties": "pairwise accuracy over pairs without a human tie; predicted ties wrong",
    "pickscore_tie_credit": "PickScore eval_preference_predictor.py: all pairs incl. human ties; 1 for a "
    "match, 0.5 when exactly one side is a tie, 0 otherwise",
    "mjbench": "MJ-Bench: accuracy with ties (human ties dropped, predicted ties wrong); also without ties "
    "(predicted ties dropped)",
    "tifa_correlation": "TIFA160: Spearman rho, Kendall tau-b and Pearson r against human Likert averages "
    "over all images",
}

#: The protocols whose headline is a binomial proportion (correct / n_pairs), so it has a Wilson interval.
BINOMIAL_PROTOCOLS = ("imagereward_micro", "pairwise_excl_ties", "mjbench")
#: The protocols whose statistic counts human ties (the others leave human-tied pairs out).
TIES_COUNT_PROTOCOLS = ("hpsv2_ranking", "pickscore_tie_credit")

Scores = Mapping[Any, float]
Scorer = Callable[[Item], Sequence[float | None]]


# ---------------------------------------------------------------------------------------------------
# Inputs


def load_scores(path: str | Path) -> dict[Any, float]:
    """Per-image scores from a JSON or JSONL file, keyed ``(item_id, image_index)`` or ``image_id``.

    Accepted shapes (mixed freely in one file):

    * rows ``{"item_id": ..., "image_index": i, "score": s}`` or ``{"image_id": ..., "score": s}``;
    * rows ``{"item_id" | "id": ..., "scores" | "rewards": [s0, s1, ...]}`` (ImageReward's test.py writes
      ``{"id", "prompt", "ranking", "rewards"}``: such a file scores directly);
    * a JSON object ``{item_id: [s0, s1, ...]}`` or ``{image_id: s}``.

    ``null`` scores are kept as missing (skipped, counted). Item ids are compared as strings.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    out: dict[Any, float] = {}

    def put(key: Any, value: Any, where: str) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SourceError(f"{file}: {where}: score {value!r} is not a number")
        if key in out:
            raise SourceError(f"{file}: {where}: duplicate score for {key!r}")
        out[key] = None if value is None else float(value)

    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, list):
                for i, v in enumerate(value):
                    put((str(key), i), v, f"key {key!r}")
            else:
                put(str(key), value, f"key {key!r}")
        return out
    if not isinstance(data, list):
        raise SourceError(f"{file}: expected rows or an object of scores")
    for n, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise SourceError(f"{file}: row {n} is not an object")
        item_id = row.get("item_id", row.get("id"))
        many = next((k for k in ("scores", "rewards") if k in row), None)
        if many is not None and item_id is not None:
            for i, v in enumerate(row[many]):
                put((str(item_id), i), v, f"row {n}")
        elif "score" in row and item_id is not None and "image_index" in row:
            put((str(item_id), int(row["image_index"])), row["score"], f"row {n}")
        elif "score" in row and "image_id" in row:
            put(str(row["image_id"]), row["score"], f"row {n}")
        else:
            raise SourceError(
                f"{file}: row {n} needs item_id + image_index + score, image_id + score, or item_id + scores"
            )
    return out


@dataclass(frozen=True)
class Verdict:
    """One pairwise judgment: images ``image_a`` (shown first) and ``image_b`` (second) of ``item_id``;
    ``answer`` ``"A"``, ``"B"``, ``"tie"`` or ``None`` (no valid answer)."""

    item_id: str
    image_a: int
    image_b: int
    answer: str | None


def load_verdicts(path: str | Path) -> list[Verdict]:
    """Pairwise judge verdicts, JSON array or JSONL of ``{item_id, image_a, image_b, answer}``; ``answer``
    is the position the judge preferred (``"A"`` = the image shown first), ``"tie"`` or ``null``. A pair
    asked in both orders has two rows, ``(a=i, b=j)`` and ``(a=j, b=i)``."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for n, row in enumerate(rows):
        try:
            out.append(
                Verdict(str(row["item_id"]), int(row["image_a"]), int(row["image_b"]), row.get("answer"))
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(f"{file}: row {n}: needs item_id, image_a, image_b, answer ({e})") from None
        model_from_position(out[-1].answer, a_shown_first=True)  # validates the answer
    return out


def scorer_callable(scorer: Any, *, open_image: Callable[[Any], Any] | None = None) -> Scorer:
    """Adapt a visionprefer scorer (``.score(prompts, images) -> array``) to ``item -> scores``: existing
    image files (or bytes) are opened with PIL and scored in one call; a missing file gives ``None``."""

    def default_open(ref: Any) -> Any:
        import io

        from PIL import Image

        if isinstance(ref, (bytes, bytearray)):
            return Image.open(io.BytesIO(ref)).convert("RGB")
        if isinstance(ref, Mapping) and ref.get("bytes") is not None:
            return Image.open(io.BytesIO(ref["bytes"])).convert("RGB")
        if hasattr(ref, "convert"):
            return ref.convert("RGB")
        return Image.open(ref).convert("RGB")

    opener = open_image or default_open

    def score(item: Item) -> list[float | None]:
        present = [
            i for i, ref in enumerate(item.images) if not (isinstance(ref, str) and not Path(ref).is_file())
        ]
        out: list[float | None] = [None] * len(item.images)
        if present:
            values = scorer.score([item.prompt] * len(present), [opener(item.images[i]) for i in present])
            for i, v in zip(present, np.asarray(values, dtype=float).tolist(), strict=True):
                out[i] = v
        return out

    return score


# ---------------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class AgreementResult:
    """Agreement of one scorer/judge with the humans of one test set under one protocol.

    ``value`` is the protocol's headline number (an accuracy in [0, 1], or Spearman ρ for
    ``tifa_correlation``). Counts: ``n_pairs`` pairs entering the statistic (for ``hpsv2_ranking`` and
    ``pickscore_tie_credit`` human ties included), ``correct`` of them (credit sum for
    ``pickscore_tie_credit``), ``human_ties`` pairs with a human tie, ``predicted_ties`` decisive pairs the
    scorer tied and ``tie_rate`` their share of decisive pairs, ``skipped_pairs`` pairs lost to a missing
    image/score, ``missing_images`` images without a score, ``items_used``/``items_skipped`` items that
    did / did not enter the statistic. ``extra`` holds protocol-specific numbers (MJ-Bench without ties;
    TIFA's three correlations). ``per_aspect`` maps an aspect label to the same statistic on its items.
    ``position_consistency`` (judges asked in both orders): ``{pairs, consistent, rate, wilson_ci}``.
    ``items`` has one record per test-set item (its pair counts, or for ``tifa_correlation`` its human and
    predicted values): what ``eval agreement`` writes to ``agreement_items.jsonl``; not in :meth:`to_dict`.
    """

    protocol: str
    protocol_description: str
    testset: str | None
    value: float | None
    n_items: int
    items_used: int
    items_skipped: int
    n_pairs: int
    correct: float
    human_ties: int
    predicted_ties: int
    tie_rate: float | None
    skipped_pairs: int
    missing_images: int
    wilson_ci: tuple[float, float] | None
    bootstrap_ci: tuple[float, float] | None
    confidence: float
    n_bootstrap: int
    seed: int
    tie_tolerance: float
    extra: dict[str, Any] = field(default_factory=dict)
    per_aspect: dict[str, dict[str, Any]] = field(default_factory=dict)
    position_consistency: dict[str, Any] | None = None
    items: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["items"]
        return out


# ---------------------------------------------------------------------------------------------------
# Core


@dataclass
class _ItemTally:
    decisive: int = 0  # pairs with a human preference
    correct: int = 0  # decisive pairs predicted right
    pred_ties: int = 0  # decisive pairs predicted tied
    human_ties: int = 0
    discordant: int = 0  # decisive pairs predicted wrong or tied (hpsv2_ranking)
    credit: float = 0.0  # pickscore_tie_credit credit over all pairs
    skipped: int = 0
    human: list[float] = field(default_factory=list)  # tifa: Likert per scored image
    predicted: list[float] = field(default_factory=list)


def agreement(
    testset_items: Sequence[Item],
    scores: Scores | Scorer | Any | None = None,
    protocol: str = "imagereward_micro",
    *,
    verdicts: Iterable[Verdict] | None = None,
    testset: str | None = None,
    tie_tolerance: float = 0.0,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> AgreementResult:
    """Agreement of ``scores`` (or pairwise ``verdicts``) with the human labels of ``testset_items``.

    Args:
        testset_items: items from :func:`~visionprefer.evaluate.testsets.load_testset`.
        scores: ``{(item_id, image_index): score}`` / ``{image_id: score}`` (:func:`load_scores`), a
            callable ``item -> [score or None per image]``, or a visionprefer scorer (has ``.score``;
            adapted by :func:`scorer_callable`). Give either ``scores`` or ``verdicts``.
        protocol: a key of :data:`PROTOCOLS`.
        verdicts: pairwise judge verdicts (:func:`load_verdicts`); pairs asked in both orders also give
            position consistency. Not for ``tifa_correlation``.
        testset: the set's name, recorded in the result (and used by :func:`format_agreement` for the
            published reference figures).
        tie_tolerance: scores within this distance are a predicted tie (for ``pickscore_tie_credit``: the
            threshold on the softmax probability difference, as PickScore's code).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r}: unknown; choose one of {', '.join(PROTOCOLS)}")
    _check_confidence(confidence)
    _check_n_bootstrap(n_bootstrap)
    if (scores is None) == (verdicts is None):
        raise ConfigError("give either scores or verdicts")
    if verdicts is not None and protocol == "tifa_correlation":
        raise ConfigError("tifa_correlation needs per-image scores, not pairwise verdicts")
    if not tie_tolerance >= 0 or math.isinf(tie_tolerance):
        raise ConfigError(f"tie_tolerance must be a finite number >= 0, got {tie_tolerance!r}")

    if (
        scores is not None
        and not isinstance(scores, Mapping)
        and not callable(scores)
        and not hasattr(scores, "score")
    ):
        raise ConfigError("scores must be a mapping, a callable or a scorer with .score()")
    if scores is not None and hasattr(scores, "score") and not isinstance(scores, Mapping):
        scores = scorer_callable(scores)

    by_item: dict[str, dict[tuple[int, int], list[Verdict]]] = {}
    if verdicts is not None:
        for v in verdicts:
            key = (min(v.image_a, v.image_b), max(v.image_a, v.image_b))
            by_item.setdefault(v.item_id, {}).setdefault(key, []).append(v)

    tallies: list[_ItemTally] = []
    aspects: list[str | None] = []
    missing_images = 0
    consistency = [0, 0]  # pairs seen in both orders, consistent ones
    for item in testset_items:
        tally = _ItemTally()
        tallies.append(tally)
        aspects.append(item.aspect)
        n = len(item.images)
        if protocol == "tifa_correlation":
            if item.likert is None:
                raise ConfigError(
                    f"item {item.item_id!r} has no Likert scores: tifa_correlation needs TIFA160"
                )
            values = _item_scores(item, scores)
            for i in range(n):
                if values[i] is None:
                    missing_images += 1
                else:
                    tally.human.append(item.likert[i])
                    tally.predicted.append(values[i])
            continue
        if item.ranking is None:
            raise ConfigError(f"item {item.item_id!r} has no human ranking: protocol {protocol} needs one")
        if verdicts is None:
            values = _item_scores(item, scores)
            missing_images += sum(v is None for v in values)
        for i in range(n):
            for j in range(i + 1, n):
                human = _human(item.ranking[i], item.ranking[j])
                if verdicts is None:
                    pred = _predicted(values[i], values[j], protocol, tie_tolerance)
                else:
                    pred, both, same = _from_verdicts(by_item.get(item.item_id, {}).get((i, j), []), i, j)
                    if both:
                        consistency[0] += 1
                        consistency[1] += same
                if pred is None:
                    if human == 0 and protocol not in TIES_COUNT_PROTOCOLS:
                        tally.human_ties += 1  # left out by the protocol, scored or not
                    else:
                        tally.skipped += 1
                    continue
                _count(tally, human, pred)

    value, population, stat = _statistic_fn(protocol)
    used = [k for k, t in enumerate(tallies) if population(t)]
    result_value = value(tallies, used)
    bootstrap = _bootstrap(tallies, used, value, confidence, n_bootstrap, seed)

    decisive = sum(t.decisive for t in tallies)
    pred_ties = sum(t.pred_ties for t in tallies)
    correct: float = sum(t.correct for t in tallies)
    n_pairs = decisive
    if protocol == "hpsv2_ranking":
        n_pairs = decisive + sum(t.human_ties for t in tallies)
        correct = n_pairs - sum(t.discordant for t in tallies)
    elif protocol == "pickscore_tie_credit":
        n_pairs = decisive + sum(t.human_ties for t in tallies)
        correct = sum(t.credit for t in tallies)
    extra = stat(tallies, used)
    wilson = wilson_interval(int(correct), n_pairs, confidence) if protocol in BINOMIAL_PROTOCOLS else None

    per_aspect: dict[str, dict[str, Any]] = {}
    labels = sorted({a for a in aspects if a is not None})
    for label in labels:
        members = [k for k in used if aspects[k] == label]
        sub = [tallies[k] for k in range(len(tallies)) if aspects[k] == label]
        entry: dict[str, Any] = {
            "items": len(members),
            "value": value(tallies, members) if members else None,
            "pairs": sum(t.decisive for t in sub),
            "correct": sum(t.correct for t in sub),
            "predicted_ties": sum(t.pred_ties for t in sub),
        }
        if protocol in BINOMIAL_PROTOCOLS:
            entry["wilson_ci"] = wilson_interval(entry["correct"], entry["pairs"], confidence)
        entry.update(stat(tallies, members) if members else {})
        per_aspect[label] = entry

    position = None
    if verdicts is not None:
        position = {
            "pairs": consistency[0],
            "consistent": consistency[1],
            "rate": consistency[1] / consistency[0] if consistency[0] else None,
            "wilson_ci": wilson_interval(consistency[1], consistency[0], confidence),
        }

    return AgreementResult(
        protocol=protocol,
        protocol_description=PROTOCOLS[protocol],
        testset=testset,
        value=result_value,
        n_items=len(tallies),
        items_used=len(used),
        items_skipped=len(tallies) - len(used),
        n_pairs=n_pairs if protocol != "tifa_correlation" else 0,
        correct=correct,
        human_ties=sum(t.human_ties for t in tallies),
        predicted_ties=pred_ties,
        tie_rate=pred_ties / decisive if decisive else None,
        skipped_pairs=sum(t.skipped for t in tallies),
        missing_images=missing_images,
        wilson_ci=wilson,
        bootstrap_ci=bootstrap,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
        tie_tolerance=tie_tolerance,
        extra=extra,
        per_aspect=per_aspect,
        position_consistency=position,
        items=tuple(_item_record(item, t, protocol) for item, t in zip(testset_items, tallies, strict=True)),
    )


def _item_record(item: Item, tally: _ItemTally, protocol: str) -> dict[str, Any]:
    head: dict[str, Any] = {"item_id": item.item_id}
    if item.aspect is not None:
        head["aspect"] = item.aspect
    if protocol == "tifa_correlation":
        return {**head, "human": tally.human, "predicted": tally.predicted}
    return {
        **head,
        "decisive_pairs": tally.decisive,
        "correct": tally.correct,
        "predicted_ties": tally.pred_ties,
        "human_ties": tally.human_ties,
        "discordant": tally.discordant,
        "credit": tally.credit,
        "skipped_pairs": tally.skipped,
    }


def counted_pairs(item: Item, protocol: str, present: Callable[[Any], bool]) -> list[tuple[int, int]]:
    """``(i, j)``, i < j, for every pair of ``item``'s images that ``present(image)`` accepts and whose
    comparison enters ``protocol``'s statistic (a human tie only where :data:`TIES_COUNT_PROTOCOLS`)."""
    shown = [i for i, ref in enumerate(item.images) if present(ref)]
    return [
        (i, j)
        for k, i in enumerate(shown)
        for j in shown[k + 1 :]
        if protocol in TIES_COUNT_PROTOCOLS or item.ranking[i] != item.ranking[j]
    ]


def _item_scores(item: Item, scores: Any) -> list[float | None]:
    n = len(item.images)
    if callable(scores) and not isinstance(scores, Mapping):
        values = list(scores(item))
        if len(values) != n:
            raise ConfigError(
                f"item {item.item_id!r}: the scorer returned {len(values)} scores for {n} images"
            )
    else:
        values = []
        for i in range(n):
            v = scores.get((item.item_id, i))
            if v is None and item.image_ids is not None:
                v = scores.get(item.image_ids[i])
            values.append(v)
    out: list[float | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        else:
            out.append(float(v))
    return out


def _human(rank_i: float, rank_j: float) -> int:
    """+1 when image i is preferred (lower rank), -1 when j is, 0 for a human tie."""
    return 1 if rank_i < rank_j else -1 if rank_i > rank_j else 0


def _predicted(s_i: float | None, s_j: float | None, protocol: str, tie_tolerance: float) -> int | None:
    if s_i is None or s_j is None:
        return None
    if protocol == "pickscore_tie_credit":
        # PickScore: tie when |p_i - p_j| <= threshold, p = softmax(s_i, s_j); |p_i - p_j| = tanh(|d|/2).
        difference = math.tanh(abs(s_i - s_j) / 2)
        if difference <= tie_tolerance:
            return 0
        return 1 if s_i > s_j else -1
    return int(outcome_from_scores(s_i, s_j, tie_tolerance))


def _from_verdicts(rows: list[Verdict], i: int, j: int) -> tuple[int | None, bool, bool]:
    """(outcome for image i vs j or None when unjudged, asked in both orders?, same preference in both?)."""

    def winner(v: Verdict) -> str | None:
        # label "A" = image i, "B" = image j, whatever the order shown
        label = model_from_position(v.answer, a_shown_first=(v.image_a == i))
        return label

    first = [v for v in rows if v.image_a == i]
    second = [v for v in rows if v.image_a == j]
    if first and second:
        a, b = winner(first[0]), winner(second[0])
        outcome = int(outcome_from_two_orders(a, b))
        return outcome, True, a == b and a is not None
    if first or second:
        w = winner((first or second)[0])
        return {"A": 1, "B": -1, "tie": 0, None: 0}[w], False, False
    return None, False, False


def _count(tally: _ItemTally, human: int, pred: int) -> None:
    if human == 0:
        tally.human_ties += 1
        tally.credit += 1.0 if pred == 0 else 0.5
        return
    tally.decisive += 1
    if pred == human:
        tally.correct += 1
        tally.credit += 1.0
    else:
        tally.discordant += 1
        if pred == 0:
            tally.pred_ties += 1
            tally.credit += 0.5


def _statistic_fn(protocol: str) -> tuple[Callable, Callable, Callable]:
    """(value(tallies, indices), population(tally) -> bool, extra(tallies, indices) -> dict)."""

    def none(tallies: list[_ItemTally], idx: Sequence[int]) -> dict[str, Any]:
        return {}

    def ratio(num: float, den: float) -> float | None:
        return num / den if den else None

    if protocol in ("imagereward_micro", "pairwise_excl_ties", "mjbench"):

        def value(t: list[_ItemTally], idx: Sequence[int]) -> float | None:
            return ratio(sum(t[k].correct for k in idx), sum(t[k].decisive for k in idx))

        def extra(t: list[_ItemTally], idx: Sequence[int]) -> dict[str, Any]:
            if protocol != "mjbench":
                return {}
            den = sum(t[k].decisive - t[k].pred_ties for k in idx)
            return {
                "accuracy_with_ties": value(t, idx),
                "accuracy_without_ties": ratio(sum(t[k].correct for k in idx), den),
                "pairs_without_ties": den,
            }

        return value, lambda t: t.decisive > 0, extra
    if protocol == "hpsv2_macro":

        def value(t: list[_ItemTally], idx: Sequence[int]) -> float | None:
            return float(np.mean([t[k].correct / t[k].decisive for k in idx])) if len(idx) else None

        return value, lambda t: t.decisive > 0, none
    if protocol == "hpsv2_ranking":

        def value(t: list[_ItemTally], idx: Sequence[int]) -> float | None:
            per = [1 - t[k].discordant / (t[k].decisive + t[k].human_ties) for k in idx]
            return float(np.mean(per)) if per else None

        return value, lambda t: t.decisive + t.human_ties > 0, none
    if protocol == "pickscore_tie_credit":

        def value(t: list[_ItemTally], idx: Sequence[int]) -> float | None:
            return ratio(sum(t[k].credit for k in idx), sum(t[k].decisive + t[k].human_ties for k in idx))

        return value, lambda t: t.decisive + t.human_ties > 0, none

    # tifa_correlation
    def gather(t: list[_ItemTally], idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        h = np.array([x for k in idx for x in t[k].human], dtype=float)
        p = np.array([x for k in idx for x in t[k].predicted], dtype=float)
        return h, p

    def value(t: list[_ItemTally], idx: Sequence[int]) -> float | None:
        return spearman(*gather(t, idx))

    def extra(t: list[_ItemTally], idx: Sequence[int]) -> dict[str, Any]:
        h, p = gather(t, idx)
        return {
            "spearman": spearman(h, p),
            "kendall_tau_b": kendall_tau_b(h, p),
            "pearson": pearson(h, p),
            "images": int(h.size),
        }

    return value, lambda t: len(t.human) > 0, extra


def _bootstrap(
    tallies: list[_ItemTally],
    used: list[int],
    value: Callable,
    confidence: float,
    n_bootstrap: int,
    seed: int,
) -> tuple[float, float] | None:
    n = len(used)
    if not n or not n_bootstrap:
        return None
    population = np.asarray(used)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_bootstrap):
        v = value(tallies, population[rng.integers(0, n, n)].tolist())
        stats.append(np.nan if v is None else v)
    values = np.asarray(stats, dtype=float)
    values = values[~np.isnan(values)]
    return _percentile_interval(values, confidence) if values.size else None


def run_agreement(
    testset: str,
    data: str | Path | Any,
    *,
    scores: str | Path | Scores | Scorer | Any | None = None,
    verdicts: str | Path | Iterable[Verdict] | None = None,
    protocol: str | None = None,
    out: str | Path | None = None,
    loader_options: Mapping[str, Any] | None = None,
    scorer_for: Callable[[Sequence[Item]], Any] | None = None,
    extra_inputs: Mapping[str, str] | None = None,
    candidate: Mapping[str, Any] | None = None,
    **options: Any,
) -> AgreementResult:
    """What an ``eval agreement`` registry entry calls: load ``testset`` from ``data``, score it, and with
    ``out`` write ``<out>/agreement_summary.json`` (the result, the spec's name, revision, the SHA-256 of
    the score/verdict files read (and ``extra_inputs``, role -> digest of other files read, e.g. a build
    config) and ``candidate``, the description of the scorer or judge: ``kind`` "scorer" or "judge",
    ``source`` "scorer", "scores", "verdicts", "judge" or "metrics", ``id`` its model id or None, and
    details) and ``<out>/agreement_items.jsonl`` (:attr:`AgreementResult.items`). ``scores``/``verdicts``
    may be file paths (:func:`load_scores`, :func:`load_verdicts`) or objects as :func:`agreement` takes;
    ``scorer_for`` instead builds the scores from the loaded items (a scorer that must see them first:
    metric feedback writes each prompt's questions). Scores computed here (a callable or a scorer) are also
    written, with ``out``, to ``<out>/agreement_scores.jsonl`` in :func:`load_scores`' rows (``--scores``
    reads them back). ``candidate`` is recorded as it is when the summary is written; ``protocol``
    defaults to the spec's; ``options`` go to :func:`agreement`."""
    from .provenance import file_sha256
    from .testsets import load_testset, testset_spec

    spec = testset_spec(testset)
    protocol = protocol or spec["protocol"]
    inputs: dict[str, str] = {}
    if isinstance(scores, (str, Path)):
        inputs["scores"] = file_sha256(Path(scores))
        scores = load_scores(scores)
    if isinstance(verdicts, (str, Path)):
        inputs["verdicts"] = file_sha256(Path(verdicts))
        verdicts = load_verdicts(verdicts)
    items = load_testset(testset, data, **dict(loader_options or {}))
    if scorer_for is not None:
        scores = scorer_for(items)
    scored: list[dict[str, Any]] = []
    if (
        scores is not None
        and not isinstance(scores, Mapping)
        and (callable(scores) or hasattr(scores, "score"))
    ):
        score_item = scores if callable(scores) else scorer_callable(scores)

        def recorded(item: Item) -> list[float | None]:
            values = list(score_item(item))
            for i, v in enumerate(values):
                missing = v is None or (isinstance(v, float) and math.isnan(v))
                scored.append(
                    {"item_id": item.item_id, "image_index": i, "score": None if missing else float(v)}
                )
            return values

        scores = recorded
    result = agreement(items, scores, protocol, verdicts=verdicts, testset=testset, **options)
    if out is not None:
        write_agreement_summary(
            out,
            result,
            {**inputs, **dict(extra_inputs or {})},
            candidate=dict(candidate) if candidate is not None else None,
        )
        if scored:
            from ..rundir import write_jsonl

            write_jsonl(Path(out) / "agreement_scores.jsonl", scored)
    return result


def write_agreement_summary(
    out: str | Path,
    result: AgreementResult,
    inputs: Mapping[str, str],
    *,
    candidate: Mapping[str, Any] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """Write ``<out>/agreement_summary.json`` (the result, its test set's spec name and revision, the
    SHA-256 of the input files read (``inputs``: role -> digest), ``candidate`` (the scorer or judge:
    ``kind``, ``source``, ``id``) and ``more``, e.g. the judge asked) and ``<out>/agreement_items.jsonl``
    (:attr:`AgreementResult.items`); returns the summary."""
    from ..rundir import atomic_write_text, write_jsonl
    from .testsets import testset_spec

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "benchmark": "agreement",
        "testset": result.testset,
        "spec_revision": testset_spec(result.testset).get("revision"),
        "protocol": result.protocol,
        "input_sha256": dict(inputs),
        "candidate": dict(candidate) if candidate is not None else None,
        **more,
        "result": result.to_dict(),
    }
    write_jsonl(folder / "agreement_items.jsonl", result.items)
    atomic_write_text(folder / "agreement_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------------
# Correlations (numpy; checked against scipy.stats in the tests)


def average_ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span (scipy's ``rankdata(method="average")``)."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size)
    sorted_a = a[order]
    start = 0
    for end in range(1, a.size + 1):
        if end == a.size or sorted_a[end] != sorted_a[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of start+1 .. end
            start = end
    return ranks


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Pearson r; ``None`` with fewer than two points or a constant side."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den else None


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman ρ: Pearson r of the average ranks (ties handled as scipy.stats.spearmanr does)."""
    if len(x) < 2:
        return None
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Kendall τ-b = (concordant − discordant) / sqrt((n0 − n_x)(n0 − n_y)), n0 = n(n−1)/2 and n_x, n_y the
    pairs tied in x, in y (scipy.stats.kendalltau's default). O(n²) memory in chunks."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = a.size
    if n < 2:
        return None
    s = nx = ny = 0
    for start in range(0, n, 512):
        sa = np.sign(a[start : start + 512, None] - a[None, :])
        sb = np.sign(b[start : start + 512, None] - b[None, :])
        s += int(np.sum(sa * sb))
        nx += int(np.count_nonzero(sa))
        ny += int(np.count_nonzero(sb))
    # every unordered pair appears twice in the full matrices
    den = math.sqrt((nx / 2) * (ny / 2))
    return (s / 2) / den if den else None


# ---------------------------------------------------------------------------------------------------
# Text


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _ci(ci: tuple[float, float] | None, scale: float = 100) -> str:
    return "n/a" if ci is None else f"[{scale * ci[0]:.2f}, {scale * ci[1]:.2f}]"


def format_agreement(
    result: AgreementResult, *, references: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """A text report of ``result``, with the published reference figures of its test set beside it.

    ``references`` defaults to the spec's ``references`` when ``result.testset`` names a spec; a figure
    published under another protocol is marked as such (not comparable as is).
    """
    lines = []
    head = f"Agreement with humans on {result.testset or 'a test set'}"
    lines.append(f"{head} — protocol {result.protocol}: {result.protocol_description}")
    conf = f"{100 * result.confidence:g}%"
    if result.protocol == "tifa_correlation":
        e = result.extra

        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        lines.append(
            f"  Spearman rho {f(e.get('spearman'))}  Kendall tau-b {f(e.get('kendall_tau_b'))}  "
            f"Pearson r {f(e.get('pearson'))}  over {e.get('images', 0)} images"
        )
        lines.append(
            f"  Spearman bootstrap {conf} CI {_ci(result.bootstrap_ci, 1)} ({result.n_bootstrap} resamples "
            f"of {result.items_used} prompts, seed {result.seed})"
        )
    else:
        lines.append(
            f"  accuracy {_pct(result.value)}%  Wilson {conf} CI {_ci(result.wilson_ci)}  bootstrap {conf} CI "
            f"{_ci(result.bootstrap_ci)} ({result.n_bootstrap} resamples of {result.items_used} items, "
            f"seed {result.seed})"
        )
        if result.protocol == "mjbench":
            lines.append(
                f"  with ties {_pct(result.extra.get('accuracy_with_ties'))}%  without ties "
                f"{_pct(result.extra.get('accuracy_without_ties'))}% ({result.extra.get('pairs_without_ties')} pairs)"
            )
        tie_rate = "n/a" if result.tie_rate is None else f"{100 * result.tie_rate:.2f}%"
        lines.append(
            f"  {result.n_pairs} pairs counted, {result.human_ties} human ties, {result.predicted_ties} predicted "
            f"ties on decisive pairs ({tie_rate}; tie tolerance {result.tie_tolerance:g})"
        )
    lines.append(
        f"  skipped: {result.skipped_pairs} pairs with a missing image or score ({result.missing_images} images "
        f"unscored), {result.items_skipped} of {result.n_items} items outside the statistic"
    )
    if result.position_consistency is not None:
        pc = result.position_consistency
        lines.append(
            f"  position consistency {_pct(pc['rate'])}% of {pc['pairs']} pairs asked in both orders "
            f"(Wilson {conf} CI {_ci(pc['wilson_ci'])})"
        )
    for name, entry in (result.extra.get("orders") or {}).items():
        lines.append(
            f"  order {name}: {_pct(entry['value'])}% ({entry['correct']:g} of {entry['n_pairs']} pairs, "
            f"{entry['predicted_ties']} predicted ties)"
        )
    for aspect, value in (result.extra.get("judge_aspects") or {}).items():
        lines.append(f"  judge's {aspect} score alone: {_pct(value)}%")
    for label, entry in result.per_aspect.items():
        lines.append(
            f"  aspect {label}: {_pct(entry['value'])}% over {entry['items']} items ({entry['pairs']} pairs)"
        )
    if references is None and result.testset:
        from .testsets import TESTSETS, testset_spec

        references = (
            testset_spec(result.testset).get("references") or [] if result.testset in TESTSETS else []
        )
    if references:
        lines.append("  published reference figures:")
        for ref in references:
            numbers = "  ".join(
                f"{k} {ref[k]}" for k in ("accuracy", "spearman", "kendall_tau_b", "pearson") if k in ref
            )
            note = ""
            if ref.get("protocol") and ref["protocol"] != result.protocol:
                note = f"  [protocol {ref['protocol']}: not comparable as is]"
            lines.append(
                f"    {ref.get('scorer', '?')}: {numbers}  ({ref.get('source', 'source not given')}){note}"
            )
    return "\n".join(lines)
