"""A pairwise VLM judge as an ``eval agreement`` candidate (``--pairwise-judge MODEL``).

The judge ``eval winrate`` uses (its guide ``winrate_pairwise``, schema and answer check,
:func:`~visionprefer.evaluate.winrate.judge_pairs`) is shown two images of a test-set item at a time, in
both orders, and says which one follows the prompt better. Every pair of an item's images that enters the
protocol's statistic is asked (for a ranked set of n images, up to n(n-1)/2 pairs); images missing from the
local copy leave their pairs out (counted as skipped). The answers become :class:`~.agreement.Verdict`
rows, the code path of ``--verdicts``: a side wins when both orders name it, and position consistency is
the share of pairs answered alike in both orders.

The response cache and usage log live in ``<out>/llm/`` (purpose ``agreement``); image bytes of the set are
written once to ``<out>/judge_images/``. The estimate (calls, answers already cached, tokens, dollars)
prints before any call; ``--max-cost-usd`` caps the spend through the LLM layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import LLMConfig
from ..errors import SourceError
from .agreement import AgreementResult, Verdict, agreement, counted_pairs, write_agreement_summary
from .agreement_judge import PURPOSE, image_present


def planned_pairs(items: list[Any], protocol: str) -> list[tuple[Any, int, int]]:
    """``(item, i, j)`` for every pair of present images whose comparison the protocol counts."""
    return [(item, i, j) for item in items for i, j in counted_pairs(item, protocol, image_present)]


def estimate_pairwise(
    llm: LLMConfig, requests: Iterable[dict[str, Any]], folder: Path, prices: Mapping[str, Any]
) -> dict[str, Any]:
    """Calls, tokens and dollars ``requests`` would still cost (answers in the cache are free); output
    tokens are the judge's ``max_tokens`` (an upper bound: a verdict and a short explanation). The requests
    are read one at a time (each carries its images): pass a generator."""
    from ..llm import estimate_tokens
    from ..llm.cache import ResponseCache, request_key
    from ..llm.usage import cost_usd, price_for, round_usd

    cache = ResponseCache(folder) if folder.exists() else None
    calls = cached = tokens_in = 0
    for request in requests:
        if cache is not None and request_key(request) in cache:
            cached += 1
        else:
            calls += 1
            tokens_in += estimate_tokens(request)
    if cache is not None:
        cache.close()
    tokens_out = calls * llm.max_tokens
    price = price_for(llm.model, dict(prices))
    return {
        "calls": calls,
        "cached": cached,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "usd": round_usd(cost_usd(price, tokens_in, tokens_out)),
        "price_known": price is not None,
        "basis": "heuristic",
    }


def run_pairwise_agreement(
    testset: str,
    data: str | Path,
    llm: LLMConfig,
    out: str | Path,
    *,
    protocol: str | None = None,
    say: Callable[[str], None] = print,
    candidate_id: str | None = None,
    image_max_side: int = 512,
    **options: Any,
) -> tuple[AgreementResult, dict[str, Any]]:
    """What ``eval agreement --pairwise-judge MODEL`` runs: plan the pairs, ``say`` the estimate, ask the
    judge in both orders, score the verdicts, write ``<out>/agreement_summary.json``."""
    from ..annotate.calibration import item_image_files
    from ..estimate import format_llm_estimate
    from ..llm.usage import usage_totals
    from .testsets import load_testset, testset_spec, with_images
    from .winrate import judge_pairs, pairwise_requests

    protocol = protocol or testset_spec(testset)["protocol"]
    if protocol == "tifa_correlation":
        raise SourceError(f"{testset}: a pairwise judge compares two images; the set rates single images")
    items = load_testset(testset, data, **with_images(testset))
    agreement(items, {}, protocol, testset=testset, n_bootstrap=0)  # protocol vs set: fails before a call
    pairs = planned_pairs(items, protocol)
    if not pairs:
        raise SourceError(
            f"{testset} at {data}: no pair of images to judge under protocol {protocol} (the judge needs the "
            "images themselves: their files in the set's published layout, or a copy with image bytes)"
        )
    folder = Path(out)
    image_dir = folder / "judge_images"
    files = [item_image_files(image_dir, item, (i, j)) for item, i, j in pairs]
    prompts = [item.prompt for item, _, _ in pairs]
    requests = (  # built as judge_pairs will send them, one pair at a time (not held: they carry images)
        r
        for prompt, (a, b) in zip(prompts, files, strict=True)
        for r in pairwise_requests(llm, prompt, Path(a), Path(b), image_max_side=image_max_side)
    )
    estimate = estimate_pairwise(llm, requests, folder / "llm", {})
    for line in format_llm_estimate("agreement pairwise judge", estimate):
        say(line)
    before = usage_totals(folder / "llm").get(PURPOSE, {}).get("attempts", 0)
    records = judge_pairs(
        prompts,
        [Path(a) for a, _ in files],
        [Path(b) for _, b in files],
        llm,
        folder,
        image_max_side=image_max_side,
        purpose=PURPOSE,
        command="eval agreement",
    )
    verdicts = []
    for (item, i, j), rec in zip(pairs, records, strict=True):
        verdicts.append(Verdict(item.item_id, i, j, rec["a_first"]))
        verdicts.append(Verdict(item.item_id, j, i, rec["b_first"]))
    result = agreement(items, verdicts=verdicts, protocol=protocol, testset=testset, **options)
    usage = usage_totals(folder / "llm").get(PURPOSE, {})
    summary = write_agreement_summary(
        out,
        result,
        {},
        candidate={"kind": "judge", "source": "pairwise", "id": candidate_id or llm.model},
        judge={
            "model": llm.model,
            "guide": "winrate_pairwise",
            "pairs": len(pairs),
            "requests": 2 * len(pairs),
            "unanswered": sum(v.answer is None for v in verdicts),
            "new_attempts": usage.get("attempts", 0) - before,
            "usd": round(usage.get("usd", 0.0), 6),
            "estimate": estimate,
            "cache": str(folder / "llm"),
        },
    )
    return result, summary
