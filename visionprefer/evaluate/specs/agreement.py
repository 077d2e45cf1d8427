"""``eval agreement``'s registry entry: how often a scorer's or a judge's preferences agree with people on
a public human preference test set (the evaluator is :mod:`visionprefer.evaluate.agreement`; the sets are
the specs in ``benchmarks/specs/human/``). No leaderboard benchmark yet."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..registry import Evaluator

AGREEMENT_SCORERS = ("clip", "aesthetic", "pickscore", "hpsv2")


def add_arguments(sp: argparse.ArgumentParser) -> None:
    from ..testsets import TESTSETS

    sp.add_argument("--testset", required=True, choices=TESTSETS, help="the human test set (its spec)")
    sp.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="a local copy of the test set in its published layout (or, for pickapic_v1_test, any folder "
        "or parquet in Pick-a-Pic columns, a visionprefer dataset's dpo config included)",
    )
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--scores",
        metavar="FILE",
        help="per-image scores, JSON or JSONL keyed by the test set's item id and image index (or image id)",
    )
    g.add_argument(
        "--verdicts", metavar="FILE", help="a pairwise judge's verdicts (JSONL), both orders allowed"
    )
    g.add_argument(
        "--judge",
        metavar="CONFIG",
        help="a build config: its annotate.judge judges the test set's images as the build would (same "
        "guide, schema, settings, client, budget max_cost_usd; both_orders adds position consistency); the "
        "estimate prints before any call, answers are cached in OUT/llm/ (a rerun asks nothing again)",
    )
    g.add_argument(
        "--scorer",
        choices=AGREEMENT_SCORERS,
        help="score the test set's images here with this scorer (needs the images in --data); a reward model "
        "trained by `visionprefer train-reward` is a pickscore-style scorer: --scorer pickscore "
        "--scorer-model ITS_FOLDER",
    )
    sp.add_argument(
        "--scorer-model", help="the scorer's model id or folder (default: the scorer's usual one)"
    )
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--protocol", help="the scoring protocol (default: the one the test set's spec names)")
    sp.add_argument("--tie-tolerance", type=float, default=0.0, help="scores this close are a predicted tie")
    sp.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="where agreement_summary.json goes; with --judge also the judge's response cache and usage log "
        "(DIR/llm/) and the test set's images as shown to it (DIR/judge_images/)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..agreement import format_agreement, run_agreement, scorer_callable

    if args.judge:
        from ..agreement_judge import run_judge_agreement

        def say(line: str) -> None:
            if not getattr(args, "quiet", False):
                print(line, flush=True)

        result, summary = run_judge_agreement(
            args.testset,
            args.data,
            args.judge,
            args.out,
            protocol=args.protocol,
            say=say,
            tie_tolerance=args.tie_tolerance,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
        j = summary["judge"]
        orders = "both orders" if j["both_orders"] else "one order"
        line = (
            f"  judge {j['model']} (guide {j['guide_version']}, {orders}): {j['requests']} requests, "
            f"{j['new_attempts']} sent now, {j['unanswered']} unanswered; ${j['usd']:.4f} spent in {j['cache']}"
        )
        return {**summary, "text": format_agreement(result) + "\n" + line}
    scores: Any = args.scores
    options: dict[str, Any] = {}
    if args.scorer:
        from ...scorers.factory import ScorerSettings, build_scorer

        settings = ScorerSettings(device=args.device, batch_size=args.batch_size)
        if args.scorer_model:
            settings = settings.with_model(args.scorer_model)
        scores = scorer_callable(build_scorer(args.scorer, settings))
        if args.testset == "pickapic_v1_test":
            options["loader_options"] = {"with_images": True}
    result = run_agreement(
        args.testset,
        args.data,
        scores=scores,
        verdicts=args.verdicts,
        protocol=args.protocol,
        out=args.out,
        tie_tolerance=args.tie_tolerance,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        **options,
    )
    summary = json.loads((Path(args.out) / "agreement_summary.json").read_text(encoding="utf-8"))
    return {**summary, "text": format_agreement(result)}


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    return [*summary["text"].splitlines(), f"results in {args.out}"]


EVALUATOR = Evaluator(
    name="agreement",
    help="agreement of a scorer's or judge's preferences with a human preference test set",
    add_arguments=add_arguments,
    run=run,
    summary_file="agreement_summary.json",
    summary_fields=("benchmark", "testset", "protocol", "input_sha256", "result"),
    report=report,
)
