"""A build's judge as an ``eval agreement`` candidate (``--judge CONFIG``).

The judge of a build config (its ``annotate.judge`` section and ``annotate.aspect_weights``) judges the
images of a human test set exactly as the build judges its own: the same guide, per-request schema,
validator and rank settling, the same settings and client (the LLM layer's, with its response cache,
usage log and ``max_cost_usd`` budget, or the in-process local judge), asked through the calibration
gate's :func:`~visionprefer.annotate.calibration.ask_judge`.

What is asked: every item with at least one pair that enters the protocol's statistic (a two-image item
whose humans tied is not asked under a protocol that skips human ties); its images with a file or bytes in
the local copy (the missing ones are skipped pairs, counted), shown in the test set's order, in groups of
``group_size`` (default: all of an item's images in one request, as the build shows a prompt's images).
With ``both_orders`` each group is also shown reversed (a pair swapped).

What is measured: each image's score is the judge's overall score (the weighted mean of its aspects),
averaged over the orders it was shown in (as the build labels its images); :func:`~.agreement.agreement`
then scores those under the test set's protocol, per aspect label where the set has them. ``extra`` adds
each of the judge's four aspect scores on its own (``judge_aspects``) and, with both orders, each order
on its own and the two combined as a pairwise judge's verdicts are (``orders``: ``listed``, ``reversed``,
``both_agree`` — a side wins only when both orders name it); position consistency comes from those
verdicts, the code path of ``--verdicts``.

The response cache and usage log live in ``<out>/llm/`` (purpose ``agreement``), image bytes of the set
are written once to ``<out>/judge_images/``; a rerun answers from the cache. A local judge's answers are
not cached (no dollars; it decodes again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import ASPECTS, BuildConfig
from ..errors import BudgetExceeded, ConfigError, SourceError
from .agreement import AgreementResult, Verdict, agreement, counted_pairs, write_agreement_summary
from .stats import outcome_from_scores

PURPOSE = "agreement"  # the usage log's purpose of the judge's calls
ORDER_NAMES = ("listed", "reversed")


def load_judge_config(path: str | Path) -> BuildConfig:
    """The build config at ``path``; ConfigError unless it has an ``annotate.judge`` section."""
    import yaml

    from ..config import load_config

    config = load_config(path)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    annotate = data.get("annotate") if isinstance(data, dict) else None
    if not isinstance(annotate, dict) or not isinstance(annotate.get("judge"), dict):
        raise ConfigError(
            f"{path}: no annotate.judge section; eval agreement --judge measures the judge a build config "
            "defines (see examples/visionprefer.yaml)"
        )
    return config


def image_present(ref: Any) -> bool:
    """Whether a test-set image reference can be shown: an existing file, or encoded bytes."""
    if isinstance(ref, str):
        return Path(ref).is_file()
    if isinstance(ref, Mapping):
        ref = ref.get("bytes")
    return isinstance(ref, (bytes, bytearray)) and len(ref) > 0


def plan_asks(items: Sequence[Any], protocol: str, group_size: int | None, both_orders: bool) -> list[Any]:
    """The judge requests for ``items`` under ``protocol`` (see the module docstring), each a
    :class:`~visionprefer.annotate.calibration.JudgeAsk` with its order name as ``(ask, order)``."""
    from ..annotate.calibration import JudgeAsk

    out = []
    for item in items:
        present = [i for i, ref in enumerate(item.images) if image_present(ref)]
        if protocol == "tifa_correlation":
            wanted = bool(present)
        else:
            wanted = bool(counted_pairs(item, protocol, image_present))
        if not wanted:
            continue
        size = group_size or len(present)
        for start in range(0, len(present), size):
            shown = tuple(present[start : start + size])
            out.append((JudgeAsk(item, shown), "listed"))
            if both_orders and len(shown) > 1:
                out.append((JudgeAsk(item, shown[::-1]), "reversed"))
    return out


def _sub_result(result: AgreementResult) -> dict[str, Any]:
    return {
        "value": result.value,
        "n_pairs": result.n_pairs,
        "correct": result.correct,
        "predicted_ties": result.predicted_ties,
        "wilson_ci": result.wilson_ci,
    }


def judge_agreement(
    testset: str,
    items: Sequence[Any],
    answers: Sequence[Any],
    orders: Sequence[str],
    weights: Mapping[str, float],
    protocol: str,
    *,
    both_orders: bool,
    tie_tolerance: float = 0.0,
    **options: Any,
) -> AgreementResult:
    """The agreement of the judge's ``answers`` (:class:`~visionprefer.annotate.calibration.JudgeAnswer`,
    each asked in the order named by ``orders``) with the humans of ``items``."""
    from ..annotate.judge import overall_score

    overall: dict[Any, list[float]] = {}
    by_aspect: dict[str, dict[Any, list[float]]] = {a: {} for a in ASPECTS}
    by_order: dict[str, dict[Any, float]] = {name: {} for name in ORDER_NAMES}
    verdicts: list[Verdict] = []
    for answer, order in zip(answers, orders, strict=True):
        if answer.rows is None:
            continue
        item_id, shown = answer.ask.item.item_id, answer.ask.shown
        values = [overall_score(row, weights) for row in answer.rows]
        for index, row, value in zip(shown, answer.rows, values, strict=True):
            key = (item_id, index)
            overall.setdefault(key, []).append(value)
            by_order[order][key] = value
            for aspect in ASPECTS:
                by_aspect[aspect].setdefault(key, []).append(row[aspect]["score"])
        for p in range(len(shown)):
            for q in range(p + 1, len(shown)):  # image shown[p] was shown before shown[q]: it is "A"
                outcome = int(outcome_from_scores(values[p], values[q], tie_tolerance))
                verdicts.append(Verdict(item_id, shown[p], shown[q], {1: "A", -1: "B", 0: "tie"}[outcome]))

    def mean(scores: dict[Any, list[float]]) -> dict[Any, float]:
        return {k: sum(v) / len(v) for k, v in scores.items()}

    common = {"testset": testset, "tie_tolerance": tie_tolerance, **options}
    quick = {**common, "n_bootstrap": 0}  # the secondary figures: point values and Wilson intervals
    result = agreement(items, mean(overall), protocol, **common)
    extra: dict[str, Any] = {
        "judge_aspects": {a: agreement(items, mean(by_aspect[a]), protocol, **quick).value for a in ASPECTS}
    }
    position = None
    if both_orders:
        extra["orders"] = {
            name: _sub_result(agreement(items, by_order[name], protocol, **quick)) for name in ORDER_NAMES
        }
        if protocol != "tifa_correlation":  # a rating set has no pairwise verdicts
            combined = agreement(items, verdicts=verdicts, protocol=protocol, **quick)
            extra["orders"]["both_agree"] = _sub_result(combined)
            position = combined.position_consistency
    return dataclasses.replace(result, extra={**result.extra, **extra}, position_consistency=position)


def run_judge_agreement(
    testset: str,
    data: str | Path,
    config_path: str | Path,
    out: str | Path,
    *,
    protocol: str | None = None,
    loader_options: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
    candidate_id: str | None = None,
    **options: Any,
) -> tuple[AgreementResult, dict[str, Any]]:
    """What ``eval agreement --judge CONFIG`` runs: plan the requests, ``say`` their estimate (calls,
    tokens, dollars) before any call, ask the judge, score, and write ``<out>/agreement_summary.json``.
    Returns the result and the summary. Bad input (no ``annotate.judge``, a judge that cannot be used, no
    image in ``data``) is an error before any call; a budget stop is :class:`BudgetExceeded`, the answers
    so far kept in the cache."""
    from types import SimpleNamespace

    from ..annotate.calibration import ask_judge, item_image_files
    from ..annotate.judge import Judge, estimate_judge, judge_identity, judge_name
    from ..estimate import format_llm_estimate
    from ..llm.cache import ResponseCache, request_key
    from ..llm.usage import usage_totals
    from ..rundir import RunDir
    from .provenance import file_sha256
    from .testsets import load_testset, testset_spec, with_images

    config = load_judge_config(config_path)
    judge = config.annotate.judge
    notes = []
    if judge.mode == "batch":  # the same requests, asked online (a Batch API round can take a day)
        judge = dataclasses.replace(judge, mode="online")
        config = dataclasses.replace(config, annotate=dataclasses.replace(config.annotate, judge=judge))
        notes.append("annotate.judge.mode batch: asked online here, at online prices")
    protocol = protocol or testset_spec(testset)["protocol"]
    items = load_testset(testset, data, **with_images(testset, loader_options))
    agreement(items, {}, protocol, testset=testset, n_bootstrap=0)  # protocol vs set: fails before a call
    if not any(image_present(ref) for item in items for ref in item.images):
        raise SourceError(
            f"{testset} at {data}: no image found (the judge needs the images themselves: their files in "
            "the set's published layout, or a copy with image bytes)"
        )
    planned = plan_asks(items, protocol, judge.group_size, judge.both_orders)
    if not planned:
        raise SourceError(f"{testset} at {data}: no pair to judge under protocol {protocol}")
    asks = [a for a, _ in planned]
    orders = [o for _, o in planned]
    proto = Judge(judge, config.annotate.aspect_weights)
    run = RunDir(out)
    image_dir = run.root / "judge_images"

    local = None
    if judge.backend == "local":  # the model loads and every group size's schema compiles here
        from ..annotate.stage import _local_client
        from ..dist import process_info

        local = _local_client(config, run, process_info(), sizes={len(a.shown) for a in asks}, proto=proto)
        local.purpose = PURPOSE

    # The estimate, before any call: the requests are built as they will be sent, to find those answered.
    cache = ResponseCache(run.llm_dir) if judge.backend == "api" and run.llm_dir.exists() else None
    groups, answered = [], set()
    for a in asks:
        key = request_key(proto.request(a.item.prompt, item_image_files(image_dir, a.item, a.shown)))
        groups.append(SimpleNamespace(image_ids=a.shown, annotation_id=key))
        if cache is not None and key in cache:
            answered.add(key)
    if cache is not None:
        cache.close()
    estimate = estimate_judge(config, {}, answered, groups)
    for line in format_llm_estimate("agreement judge", estimate) + notes:
        say(line)

    def client() -> Any:
        if local is not None:
            return local
        from ..llm import LLMClient

        return LLMClient(judge.llm, folder=run.llm_dir, purpose=PURPOSE, prices=config.prices)

    before = usage_totals(run.llm_dir).get(PURPOSE, {}).get("attempts", 0)
    answers = ask_judge(asks, proto, client, image_dir)
    usage = usage_totals(run.llm_dir).get(PURPOSE, {})
    if any(a.rows is None and a.result.kind == "budget" for a in answers):
        done = sum(a.rows is not None for a in answers)
        raise BudgetExceeded(
            f"eval agreement: annotate.judge.llm.max_cost_usd reached after {done} of {len(asks)} judge "
            f"requests; the answers are kept in {run.llm_dir}: raise the budget and run the same command"
        )
    result = judge_agreement(
        testset,
        items,
        answers,
        orders,
        config.annotate.aspect_weights,
        protocol,
        both_orders=judge.both_orders,
        **options,
    )
    summary = write_agreement_summary(
        out,
        result,
        {"judge_config": file_sha256(Path(config_path))},
        candidate={"kind": "judge", "source": "judge", "id": candidate_id or judge_name(judge)},
        judge={
            "config": str(config_path),
            "model": judge_name(judge),
            "backend": judge.backend,
            "identity": judge_identity(judge),
            "guide_version": proto.version,
            "scale": [judge.score_min, judge.score_max],
            "both_orders": judge.both_orders,
            "group_size": judge.group_size,
            "requests": len(asks),
            "items_not_asked": len(items) - len({a.item.item_id for a in asks}),
            "unanswered": sum(a.rows is None for a in answers),
            "new_attempts": usage.get("attempts", 0) - before,
            "usd": round(usage.get("usd", 0.0), 6),
            "estimate": estimate,
            "cache": str(run.llm_dir),
        },
    )
    return result, summary
