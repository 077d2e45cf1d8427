"""``eval hpsv2``'s registry entry: the HPS v2 benchmark, 4 styles x 800 prompts (the evaluator is
:mod:`visionprefer.evaluate.hpsv2`); its leaderboard benchmark ``hpsv2``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import ConfigError
from ...leaderboard.fields import SCORE_TOLERANCE, Problem, check_ci, field, num
from ...leaderboard.table import Row, Table, evaluators_text, fmt, model_cells
from ..registry import Benchmark, Evaluator, add_source_arguments, source_kwargs

HPS_STYLES = ("anime", "concept-art", "paintings", "photo")  # as evaluate.hpsv2.STYLES
DECIMALS = 2


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--version", default="v2.1", choices=["v2.0", "v2.1"])
    sp.add_argument("--styles", default="anime,concept-art,paintings,photo")
    sp.add_argument("--benchmark-dir", metavar="DIR", help="local folder with <style>.json prompt files")
    sp.add_argument("--limit", type=int, help="first N prompts of each style")
    sp.add_argument("--checkpoint", help="local HPS checkpoint (.pt) instead of the Hub's")
    sp.add_argument(
        "--no-antialias", action="store_true", help="resize without antialiasing (older torchvision)"
    )
    add_source_arguments(sp)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..hpsv2 import run_hpsv2

    return run_hpsv2(
        args.out,
        version=args.version,
        styles=tuple(x.strip() for x in args.styles.split(",") if x.strip()),
        benchmark_dir=args.benchmark_dir,
        limit=args.limit,
        checkpoint=args.checkpoint,
        antialias=not args.no_antialias,
        submission=bool(args.submission),
        **source_kwargs(args),
    )


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    lines = [
        f"{style:<12} {row['mean']:.2f} ± {row['std']:.4f}  ({row['n_images']} images)"
        for style, row in summary["styles"].items()
    ]
    lines.append(
        f"HPS {summary['version']} average {summary['average']:.2f} over {summary['n_images']} images; "
        f"skipped {summary['skipped'] or 'none'}; results in {args.out}"
    )
    return lines


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    from ..hpsv2 import incomplete_reason

    reason = incomplete_reason(s)
    if reason is not None:
        raise ConfigError(reason)
    return {
        "hpsv2": {
            "metric_version": s["version"],
            "evaluators": {"reward_model": s.get("reward_model", "xswu/HPSv2")},
            "n": s["n_images"],
            "summary": {
                "checkpoint": s["checkpoint"],
                "antialias": s["antialias"],
                "styles": s["styles"],
                "average": s["average"],
            },
            "results": str(out / "hpsv2_items.jsonl"),
        }
    }


def hps_checkpoint_version(checkpoint: str) -> str | None:
    """The HPS version a checkpoint file name names (``HPS_v2_compressed.pt`` -> "v2.0"), or None."""
    match = re.search(r"HPS_v(2(?:\.\d+)?)", PurePosixPath(checkpoint.replace("\\", "/")).name, re.IGNORECASE)
    if match is None:
        return None
    number = match.group(1)
    return "v2.0" if number == "2" else f"v{number}"


def check(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """A checkpoint file name naming the other HPS version (``HPS_v2_...`` is v2.0, ``HPS_v2.1_...`` is
    v2.1); ``n`` != the sum of the styles' ``n_images``; ``average`` farther than 0.01 from the mean of the
    style means weighted by ``n_images`` (0.01 allows every number to be rounded to two decimals); the CI."""
    s = entry["summary"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    version = entry["metric_version"]
    named = hps_checkpoint_version(s["checkpoint"])
    if named is not None and named != version:
        out.append(
            (
                at("summary", "checkpoint"),
                f"{s['checkpoint']!r} is the HPS {named} checkpoint but metric_version is {version!r}",
            )
        )
    styles = s["styles"]
    n_images = sum(styles[k]["n_images"] for k in HPS_STYLES)
    if entry["n"] != n_images:
        out.append((at("n"), f"{entry['n']} differs from the {n_images} images summed over the styles"))
    expected = sum(styles[k]["mean"] * styles[k]["n_images"] for k in HPS_STYLES) / n_images
    if abs(s["average"] - expected) > SCORE_TOLERANCE + 1e-9:
        out.append(
            (
                at("summary", "average"),
                f"{num(s['average'])} is not the mean over the styles, {expected:.4f} "
                f"(weighted by n_images; tolerance {SCORE_TOLERANCE})",
            )
        )
    if "average_ci" in s:
        out += check_ci(
            (*prefix, "summary", "average_ci"), s["average_ci"], s["average"], "average", SCORE_TOLERANCE
        )
    return out


def rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    version = entry["metric_version"]
    values = {"average": s["average"], **{k: s["styles"][k]["mean"] for k in HPS_STYLES}}
    key = ("hpsv2", version, s["checkpoint"], s["antialias"], tuple(sorted(entry["evaluators"].items())))
    extras = [k for k in values if k != metric]

    def table() -> Table:
        return Table(
            title=f"HPS {version}: {metric}",
            description=f"Checkpoint {s['checkpoint']}, antialiased resize {'on' if s['antialias'] else 'off'}; "
            f"{evaluators_text(entry)}. Scores are 100 x cosine.",
            metric=metric,
            decimals=DECIMALS,
            extra_columns=extras,
        )

    model, settings = model_cells(data)
    ci = s.get("average_ci") if metric == "average" else None
    row = Row(name, model, settings, values[metric], ci, entry["n"], {k: fmt(values[k], 2) for k in extras})
    return [(key, table, row)]


BENCHMARK = Benchmark(name="hpsv2", title="HPS", metrics=("average", *HPS_STYLES), check=check, rows=rows)

EVALUATOR = Evaluator(
    name="hpsv2",
    help="HPS v2 benchmark: 4 styles x 800 prompts, v2.0 or v2.1 checkpoint",
    add_arguments=add_arguments,
    run=run,
    summary_file="hpsv2_summary.json",
    summary_fields=(
        "benchmark",
        "version",
        "reward_model",
        "checkpoint",
        "antialias",
        "chunk",
        "styles",
        "average",
        "n_images",
        "skipped",
        "scorer",
        "model",
        "images",
        "limit",
        "prompts_per_style",
        "benchmark_prompts_per_style",
        "complete",
        "provenance",
    ),
    report=report,
    benchmarks=(BENCHMARK,),
    entries=entries,
)
