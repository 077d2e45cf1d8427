"""``eval tifa``'s registry entry: TIFA v1.0 VQA accuracy (the evaluator is
:mod:`visionprefer.evaluate.tifa`); its leaderboard benchmark ``tifa``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...leaderboard.fields import RATE_TOLERANCE, Problem, check_ci, field
from ...leaderboard.table import Row, Table, evaluators_text, fmt, model_cells
from ..registry import Benchmark, Evaluator, add_source_arguments, source_kwargs

TIFA_V1_CAPTIONS = 4081
TIFA_V1_QUESTIONS = 25829
DECIMALS = 3


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--questions", metavar="FILE|URL", help="question/answer file (default: the official v1.0, cached)"
    )
    sp.add_argument("--limit", type=int, help="first N captions only")
    sp.add_argument("--vqa-model", help="VQA model (default Salesforce/blip-vqa-base)")
    sp.add_argument(
        "--embed-model",
        default="sentence-transformers/all-mpnet-base-v2",
        help="sentence embedding that maps free-form answers to choices",
    )
    add_source_arguments(sp)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..tifa import run_tifa

    return run_tifa(
        args.out,
        questions=args.questions,
        limit=args.limit,
        vqa_model=args.vqa_model,
        embed_model=args.embed_model,
        **source_kwargs(args),
    )


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    stdev = summary.get("tifa_stdev")
    return [
        f"tifa: average {summary['tifa_average']:.4f}"
        + (f" (stdev {stdev:.4f})" if stdev is not None else "")
        + f" over {summary['n_captions']} captions / {summary['n_questions']} questions; "
        f"skipped {summary.get('skipped_questions') or 'none'}; results in {args.out}"
    ]


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    return {
        "tifa": {
            "metric_version": "v1.0",
            "evaluators": {"vqa_model": s["vqa_model"], "similarity_model": s["similarity_model"]},
            "n": s["n_captions"],
            "summary": {
                k: s[k]
                for k in ("tifa_average", "tifa_stdev", "accuracy_by_type", "n_captions", "n_questions")
            },
            "results": str(out / "tifa_items.jsonl"),
        }
    }


def check(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """``n`` != ``n_captions``; fewer questions than captions; more than TIFA v1.0's 4,081 captions or
    25,829 questions; ``tifa_stdev`` null with two or more captions, or a number with one; separate
    ``human``/``animal`` types; the CI."""
    s = entry["summary"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    n_captions, n_questions = s["n_captions"], s["n_questions"]
    if entry["n"] != n_captions:
        out.append(
            (
                at("n"),
                f"{entry['n']} differs from summary.n_captions = {n_captions} (tifa's n counts captions)",
            )
        )
    if n_questions < n_captions:
        out.append(
            (
                at("summary", "n_questions"),
                f"{n_questions} questions for {n_captions} captions: every caption has at least one",
            )
        )
    if n_captions > TIFA_V1_CAPTIONS:
        out.append(
            (
                at("summary", "n_captions"),
                f"{n_captions} is more than TIFA v1.0's {TIFA_V1_CAPTIONS} captions",
            )
        )
    if n_questions > TIFA_V1_QUESTIONS:
        out.append(
            (
                at("summary", "n_questions"),
                f"{n_questions} is more than TIFA v1.0's {TIFA_V1_QUESTIONS} questions",
            )
        )
    if s["tifa_stdev"] is None and n_captions >= 2:
        out.append(
            (
                at("summary", "tifa_stdev"),
                f"must be a number: the sample standard deviation of {n_captions} captions exists",
            )
        )
    if s["tifa_stdev"] is not None and n_captions == 1:
        out.append(
            (
                at("summary", "tifa_stdev"),
                "must be null: the sample standard deviation of one caption is undefined",
            )
        )
    for key in ("human", "animal"):
        if key in s["accuracy_by_type"]:
            out.append(
                (
                    at("summary", "accuracy_by_type", key),
                    'TIFA merges human and animal questions as "animal/human"',
                )
            )
    if "tifa_average_ci" in s:
        out += check_ci(
            (*prefix, "summary", "tifa_average_ci"),
            s["tifa_average_ci"],
            s["tifa_average"],
            "tifa_average",
            RATE_TOLERANCE,
        )
    return out


def rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    if metric == "tifa_average":
        value, ci = s["tifa_average"], s.get("tifa_average_ci")
        extras = {"stdev": fmt(s["tifa_stdev"], 3), "questions": str(s["n_questions"])}
    elif metric in s["accuracy_by_type"]:
        value, ci = s["accuracy_by_type"][metric], None
        extras = {"tifa_average": fmt(s["tifa_average"], 3), "questions": str(s["n_questions"])}
    else:
        return []
    version = entry["metric_version"]
    key = ("tifa", version, tuple(sorted(entry["evaluators"].items())))

    def table() -> Table:
        what = (
            "TIFA score (mean over captions)"
            if metric == "tifa_average"
            else f"accuracy on {metric} questions"
        )
        return Table(
            f"TIFA {version}: {metric}",
            f"{what}; {evaluators_text(entry)}.",
            metric,
            DECIMALS,
            list(extras),
        )

    model, settings = model_cells(data)
    return [(key, table, Row(name, model, settings, value, ci, entry["n"], extras))]


BENCHMARK = Benchmark(
    name="tifa", title="TIFA", metrics=("tifa_average",), check=check, rows=rows, open_metrics=True
)

EVALUATOR = Evaluator(
    name="tifa",
    help="TIFA v1.0: VQA accuracy on the official question/answer file",
    add_arguments=add_arguments,
    run=run,
    summary_file="tifa_summary.json",
    summary_fields=(
        "benchmark",
        "tifa_average",
        "tifa_stdev",
        "accuracy_by_type",
        "n_captions",
        "n_questions",
        "answer_mapping",
        "skipped_questions",
        "skipped_captions",
        "questions",
        "vqa_model",
        "similarity_model",
        "model",
        "images",
        "provenance",
    ),
    report=report,
    benchmarks=(BENCHMARK,),
    entries=entries,
)
