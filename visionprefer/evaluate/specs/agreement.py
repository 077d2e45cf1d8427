"""``eval agreement``'s registry entry: how often a scorer's or a judge's preferences agree with people on
a public human preference test set (the evaluator is :mod:`visionprefer.evaluate.agreement`; the sets are
the specs in ``benchmarks/specs/human/``). No leaderboard benchmark yet."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...scorers.factory import DEFAULT_CQ_THRESHOLD
from ..registry import Evaluator

AGREEMENT_SCORERS = ("clip", "aesthetic", "pickscore", "hpsv2", "cq")


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
        "--scorer",
        choices=AGREEMENT_SCORERS,
        help="score the test set's images here with this scorer (needs the images in --data); a reward model "
        "trained by `visionprefer train-reward` is a pickscore-style scorer: --scorer pickscore "
        "--scorer-model ITS_FOLDER",
    )
    g.add_argument(
        "--metrics",
        metavar="CONFIG",
        help="metric feedback's weighted total: a build config whose annotate.metrics section gives the "
        "scorers, weights, device and batch size; each image gets the total such a build stores for it. "
        "LLM-written questions (and VLM answers) are estimated first, capped by the config's max_cost_usd "
        "and cached under --out",
    )
    sp.add_argument(
        "--scorer-model", help="the scorer's model id or folder (default: the scorer's usual one)"
    )
    sp.add_argument(
        "--cq-threshold",
        type=float,
        default=DEFAULT_CQ_THRESHOLD,
        help="--scorer cq: the detection confidence an object needs to count (default %(default)s)",
    )
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--protocol", help="the scoring protocol (default: the one the test set's spec names)")
    sp.add_argument("--tie-tolerance", type=float, default=0.0, help="scores this close are a predicted tie")
    sp.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, metavar="DIR", help="where agreement_summary.json goes")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..agreement import format_agreement, run_agreement, scorer_callable

    scores: Any = args.scores
    options: dict[str, Any] = {}
    if (args.scorer or args.metrics) and args.testset == "pickapic_v1_test":
        options["loader_options"] = {"with_images": True}
    if args.scorer:
        from ...scorers.factory import ScorerSettings, build_scorer

        settings = ScorerSettings(
            device=args.device, batch_size=args.batch_size, cq_threshold=args.cq_threshold
        )
        if args.scorer_model:
            settings = settings.with_model(args.scorer_model)
        scores = scorer_callable(build_scorer(args.scorer, settings))
        options["candidate"] = {"scorer": args.scorer, "model": args.scorer_model}
        if args.scorer == "cq":
            options["candidate"]["cq_threshold"] = args.cq_threshold
    elif args.metrics:
        options.update(_metrics_candidate(args))
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


def _metrics_candidate(args: argparse.Namespace) -> dict[str, Any]:
    """``--metrics CONFIG``: the options of ``run_agreement`` that score each item with metric feedback's
    weighted total (:func:`~visionprefer.annotate.metrics.metric_scorer`, its LLM cache and usage log in
    ``<out>/llm``), and the candidate recorded in the summary (models, weights, the LLM estimate)."""
    from ...annotate.metrics import images_per_prompt, metric_models, metric_scorer
    from ...config import load_config
    from ...errors import ConfigError
    from ...rundir import RunDir

    config = load_config(args.metrics)
    if config.annotate.backend != "metrics":
        raise ConfigError(
            f"--metrics {args.metrics}: annotate.backend is {config.annotate.backend!r}; the weighted total "
            "is metric feedback's (annotate.backend: metrics)"
        )
    mc = config.annotate.metrics
    candidate: dict[str, Any] = {
        "metrics": str(args.metrics),
        "models": metric_models(mc),
        "weights": dict(mc.weights),
    }

    def scorer_for(items: Any) -> Any:
        scorer, candidate["llm_estimate"] = metric_scorer(config, RunDir(args.out), images_per_prompt(items))
        return scorer

    return {"scorer_for": scorer_for, "candidate": candidate}


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    lines = [*summary["text"].splitlines()]
    for role, row in ((summary.get("candidate") or {}).get("llm_estimate") or {}).items():
        lines.append(
            f"  LLM {role}: {row['calls']} calls estimated ({row.get('cached', 0)} already answered), "
            f"${row['usd']:.4f}" + ("" if row.get("price_known", True) else " (no price known for the model)")
        )
    return [*lines, f"results in {args.out}"]


EVALUATOR = Evaluator(
    name="agreement",
    help="agreement of a scorer's or judge's preferences with a human preference test set",
    add_arguments=add_arguments,
    run=run,
    summary_file="agreement_summary.json",
    summary_fields=("benchmark", "testset", "protocol", "input_sha256", "result"),
    report=report,
)
