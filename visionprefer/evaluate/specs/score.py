"""``eval score``'s registry entry: CLIP score, LAION aesthetic, PickScore, HPS v2 and CQ on a prompt list
(the evaluator is :mod:`visionprefer.evaluate.score`); its leaderboard benchmark ``score``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...leaderboard.fields import SCORE_TOLERANCE, Problem, check_ci, field
from ...leaderboard.table import Row, Table, fmt, model_cells
from ..registry import Benchmark, Evaluator, add_source_arguments, source_kwargs

#: The metrics a submission's ``score`` entry can report (HPS and CQ have their own benchmarks or none).
LEADERBOARD_METRICS = ("clip", "aesthetic", "pickscore")
DECIMALS = {"clip": 2, "aesthetic": 3, "pickscore": 2}


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help="prompt file (txt, jsonl, json, csv/tsv, parquet) or a public prompt set by name: "
        "partiprompts, drawbench, geneval, imagereward (downloaded and cached)",
    )
    sp.add_argument("--column", help="prompt column / JSON key")
    sp.add_argument("--limit", type=int)
    sp.add_argument(
        "--metrics", default="clip,aesthetic", help="comma-separated: clip,aesthetic,pickscore,hpsv2,cq"
    )
    sp.add_argument("--clip-model", default="openai/clip-vit-large-patch14")
    sp.add_argument("--aesthetic-model", default="laion-aesthetic-v2")
    sp.add_argument("--aesthetic-clip-model")
    sp.add_argument("--pickscore-model", default="yuvalkirstain/PickScore_v1")
    sp.add_argument("--pickscore-processor", default="laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    sp.add_argument("--hpsv2-version", default="v2.1", choices=["v2.0", "v2.1"])
    sp.add_argument("--hpsv2-checkpoint")
    sp.add_argument("--cq-model", default="hustvl/yolos-tiny")
    sp.add_argument(
        "--cq-threshold",
        type=float,
        default=0.9,
        help="detection confidence CQ counts (annotate.metrics.cq_threshold in a build)",
    )
    add_source_arguments(sp)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..score import run_score

    return run_score(
        args.prompts,
        args.out,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        column=args.column,
        limit=args.limit,
        clip_model=args.clip_model,
        aesthetic_model=args.aesthetic_model,
        aesthetic_clip_model=args.aesthetic_clip_model,
        pickscore_model=args.pickscore_model,
        pickscore_processor=args.pickscore_processor,
        hpsv2_version=args.hpsv2_version,
        hpsv2_checkpoint=args.hpsv2_checkpoint,
        cq_model=args.cq_model,
        cq_threshold=args.cq_threshold,
        **source_kwargs(args),
    )


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    means = ", ".join(f"{k} {v:.4f}" for k, v in summary["means"].items() if v is not None)
    return [
        f"score: {summary['n_scored']}/{summary['n_prompts']} images scored ({means}); "
        f"skipped {summary['skipped'] or 'none'}; results in {args.out}"
    ]


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    reported = {k: v for k, v in s["means"].items() if k in LEADERBOARD_METRICS and v is not None}
    if not reported:
        raise ConfigError(
            "--submission: the score benchmark of a submission needs clip, aesthetic or pickscore"
        )
    return {
        "score": {
            "metric_version": "v1",
            "evaluators": {k: s["models"][k] for k in reported},
            "n": s["n_scored"],
            "summary": {k: {"mean": v} for k, v in reported.items()},
            "results": str(out / "score_items.jsonl"),
        }
    }


def check(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """A metric without its evaluator model id, or an evaluator without its metric; CIs."""
    s, evaluators = entry["summary"], entry["evaluators"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    for metric in s:
        if metric not in evaluators:
            out.append(
                (at("evaluators", metric), f"missing: the summary reports {metric}, so name its model")
            )
    for metric in evaluators:
        if metric not in s:
            out.append(
                (
                    at("summary", metric),
                    f"missing: evaluators name a {metric} model but there is no {metric} result",
                )
            )
    for metric, value in s.items():
        if "ci" in value:
            out += check_ci(
                (*prefix, "summary", metric, "ci"), value["ci"], value["mean"], "mean", SCORE_TOLERANCE
            )
    return out


def rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    if metric not in s:
        return []
    version, evaluator = entry["metric_version"], entry["evaluators"][metric]
    key = ("score", version, metric, evaluator)
    others = [k for k in LEADERBOARD_METRICS if k != metric]

    def table() -> Table:
        return Table(
            f"{metric} score (metric {version})",
            f"Mean {metric} score with {evaluator}.",
            metric,
            DECIMALS[metric],
            others,
        )

    model, settings = model_cells(data)
    extras = {k: fmt(s[k]["mean"], DECIMALS[k]) if k in s else "–" for k in others}
    return [
        (key, table, Row(name, model, settings, s[metric]["mean"], s[metric].get("ci"), entry["n"], extras))
    ]


BENCHMARK = Benchmark(name="score", title="Scores", metrics=LEADERBOARD_METRICS, check=check, rows=rows)

EVALUATOR = Evaluator(
    name="score",
    help="CLIP score, LAION aesthetic, PickScore, HPS v2, CQ on a prompt list",
    add_arguments=add_arguments,
    run=run,
    summary_file="score_summary.json",
    summary_fields=(
        "benchmark",
        "n_prompts",
        "n_scored",
        "skipped",
        "means",
        "models",
        "model",
        "images",
        "provenance",
    ),
    report=report,
    benchmarks=(BENCHMARK,),
    entries=entries,
)
