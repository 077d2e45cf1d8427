"""``eval winrate``'s registry entry: model A vs B (or N models), wins/ties/losses with CIs and
Bradley-Terry ratings (the evaluator is :mod:`visionprefer.evaluate.winrate`); its leaderboard benchmarks
``winrate`` and ``bradley_terry``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...leaderboard.fields import (
    RATE_TOLERANCE,
    RATING_TOLERANCE,
    Problem,
    check_ci,
    check_judge_or_scorer,
    field,
    num,
)
from ...leaderboard.table import Row, Table, evaluators_text, fmt, model_cells
from ..registry import Benchmark, Evaluator

DECIMALS = {"winrate": 3, "bradley_terry": 1}


def add_judge_llm_arguments(sp: argparse.ArgumentParser) -> None:
    """The pairwise judge's server, key, concurrency and budget (``eval winrate``, ``eval agreement``)."""
    sp.add_argument("--base-url", help="OpenAI-compatible server of the judge (default: the OpenAI API)")
    sp.add_argument("--api-key-env", default="OPENAI_API_KEY")
    sp.add_argument("--concurrency", type=int, default=8)
    sp.add_argument(
        "--max-cost-usd", type=float, metavar="USD", help="the judge's spending limit (exit 3 when reached)"
    )


def judge_llm_config(args: argparse.Namespace, model: str) -> Any:
    """The pairwise judge's :class:`~visionprefer.config.LLMConfig` from the options above."""
    from ...config import LLMConfig

    return LLMConfig(
        model=model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        max_tokens=300,
        max_cost_usd=args.max_cost_usd,
    )


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help="prompt file, or a public prompt set by name (partiprompts, drawbench, geneval, imagereward)",
    )
    sp.add_argument("--column")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--a", metavar="DIR", help="model A's images (<i:05d>.png per prompt)")
    sp.add_argument("--b", metavar="DIR", help="model B's images")
    sp.add_argument(
        "--model-dir", action="append", default=[], metavar="NAME=DIR", help="more models (repeat)"
    )
    sp.add_argument("--judge-model", help="pairwise VLM judge (asked in both orders)")
    add_judge_llm_arguments(sp)
    sp.add_argument(
        "--scorer", choices=["clip", "aesthetic", "pickscore", "hpsv2", "cq"], help="reward scorer instead"
    )
    sp.add_argument("--scorer-model", help="the scorer's model id")
    sp.add_argument("--tie-tolerance", type=float, default=0.0)
    sp.add_argument("--bootstrap", type=int, default=1000)
    sp.add_argument(
        "--submission", metavar="FILE", help="also write a leaderboard submission for the first model"
    )
    sp.add_argument(
        "--model-info",
        metavar="JSON",
        help="the first model's description (id, revision, pipeline, "
        "scheduler, steps, guidance_scale, height, width, seed_rule, dtype) for --submission",
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> Mapping[str, Any]:
    from ..winrate import run_winrate

    models: dict[str, str] = {}
    if args.a or args.b:
        if not (args.a and args.b):
            raise ConfigError("eval winrate: give both --a and --b")
        models.update(A=args.a, B=args.b)
    for item in args.model_dir:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--model-dir: {item!r} is not NAME=DIR")
        models[name] = folder
    judge = judge_llm_config(args, args.judge_model) if args.judge_model else None
    return run_winrate(
        args.prompts,
        models,
        args.out,
        judge=judge,
        scorer=args.scorer,
        scorer_model=args.scorer_model,
        tie_tolerance=args.tie_tolerance,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        column=args.column,
        limit=args.limit,
        device=args.device,
    )


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    from ..winrate import console_lines

    return [
        *console_lines(summary),  # type: ignore[arg-type]
        f"results in {args.out} (winrate_summary.json, winrate.md, winrate.png)",
    ]


def submission_summary(args: argparse.Namespace, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary as written (JSON, not dataclasses), with ``--model-info`` and the resamples."""
    plain = json.loads((Path(args.out) / "winrate_summary.json").read_text())
    if args.model_info:
        try:
            plain["model"] = json.loads(Path(args.model_info).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--model-info: cannot read {args.model_info} ({e})") from None
    plain["n_bootstrap"] = args.bootstrap
    return plain


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    """Entries for the first model (``--a``, or the first ``--model-dir``) against every opponent."""
    from ...leaderboard.schema import bradley_terry_ratings, opponent_entry

    first = next(iter(s["models"]))
    evaluators = {"judge": s["judge"]} if s["judge"] else {"scorer": s["scorer"]}
    opponents = [
        opponent_entry(name.split(" vs ", 1)[1], row)
        for name, row in s["pairs"].items()
        if name.split(" vs ", 1)[0] == first
    ]
    out_entries: dict[str, dict[str, Any]] = {
        "winrate": {
            "metric_version": "v1",
            "evaluators": evaluators,
            "n": sum(o["n"] for o in opponents),
            "summary": {"tie_tolerance": s["tie_tolerance"], "opponents": opponents},
            "results": str(out / "winrate_items.jsonl"),
        }
    }
    if s.get("bradley_terry"):
        out_entries["bradley_terry"] = {
            "metric_version": "v1",
            "evaluators": evaluators,
            "n": sum(row["n"] for row in s["pairs"].values()),
            "summary": {
                "model_name": first,
                "ratings": bradley_terry_ratings(
                    s["bradley_terry"], confidence=0.95, n_bootstrap=s["n_bootstrap"]
                ),
            },
            "results": str(out / "winrate_items.jsonl"),
        }
    return out_entries


# ------------------------------------------------------------------------------------------------- winrate


def check_winrate(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """Not exactly one of ``judge``/``scorer``; a scorer without ``tie_tolerance``, a judge with one; per
    opponent wins + ties + losses != ``n``; ``win_rate`` != (W + 0.5 T) / n, ``decisive_win_rate`` !=
    W / (W + L), ``wilson_ci`` != the Wilson interval of W in W + L at its level (each within 0.0005, so
    three-decimal rounding passes); a decisive rate or Wilson CI that is not null when W + L = 0; an
    opponent listed twice; the entry's ``n`` != the sum of the opponents' ``n``."""
    from ..stats import wilson_interval

    s = entry["summary"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out = check_judge_or_scorer(prefix, entry["evaluators"])
    tolerance = s.get("tie_tolerance")
    if "scorer" in entry["evaluators"] and tolerance is None:
        out.append(
            (at("summary", "tie_tolerance"), "missing: a scorer's win rates depend on its tie tolerance")
        )
    if "judge" in entry["evaluators"] and tolerance is not None:
        out.append(
            (
                at("summary", "tie_tolerance"),
                "must be null for a judge (its ties are disagreements between orders)",
            )
        )
    seen: set[str] = set()
    for i, o in enumerate(s["opponents"]):
        here = ("summary", "opponents", i)
        w, t, lo, n = o["wins"], o["ties"], o["losses"], o["n"]
        if o["opponent"] in seen:
            out.append((at(*here, "opponent"), f"{o['opponent']!r} is listed twice"))
        seen.add(o["opponent"])
        if w + t + lo != n:
            out.append((at(*here, "n"), f"wins + ties + losses = {w + t + lo}, not n = {n}"))
        expected = (w + 0.5 * t) / n
        if abs(o["win_rate"] - expected) > RATE_TOLERANCE:
            out.append(
                (
                    at(*here, "win_rate"),
                    f"{num(o['win_rate'])} is not (wins + 0.5 ties) / n = {expected:.4f}",
                )
            )
        out += check_ci(
            (*prefix, *here, "bootstrap_ci"), o["bootstrap_ci"], o["win_rate"], "win_rate", RATE_TOLERANCE
        )
        decisive = w + lo
        if decisive == 0:
            for key in ("decisive_win_rate", "wilson_ci"):
                if o[key] is not None:
                    out.append(
                        (at(*here, key), "must be null: there are no decisive outcomes (wins + losses = 0)")
                    )
            continue
        rate, ci = o["decisive_win_rate"], o["wilson_ci"]
        if rate is None:
            out.append(
                (
                    at(*here, "decisive_win_rate"),
                    f"must be wins / (wins + losses) = {w / decisive:.4f}, got null",
                )
            )
        elif abs(rate - w / decisive) > RATE_TOLERANCE:
            out.append(
                (
                    at(*here, "decisive_win_rate"),
                    f"{num(rate)} is not wins / (wins + losses) = {w / decisive:.4f}",
                )
            )
        if ci is None:
            out.append(
                (at(*here, "wilson_ci"), "must be the Wilson interval of wins / (wins + losses), got null")
            )
            continue
        low, high = wilson_interval(w, decisive, ci["level"])  # type: ignore[misc]
        for key, value in (("low", low), ("high", high)):
            if abs(ci[key] - value) > RATE_TOLERANCE:
                out.append(
                    (
                        at(*here, "wilson_ci", key),
                        f"{num(ci[key])} is not the {ci['level']:g} Wilson bound "
                        f"for {w} wins in {decisive} decisive outcomes, {value:.4f}",
                    )
                )
    total = sum(o["n"] for o in s["opponents"])
    if entry["n"] != total:
        out.append((at("n"), f"{entry['n']} differs from the {total} judgments summed over the opponents"))
    return out


def winrate_rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    version, evaluators = entry["metric_version"], entry["evaluators"]
    source = (
        f"judged by {evaluators['judge']} (both orders; disagreement is a tie)"
        if "judge" in evaluators
        else f"scored by {evaluators['scorer']} (tie tolerance {s['tie_tolerance']:g})"
    )
    other = "decisive_win_rate" if metric == "win_rate" else "win_rate"
    model, settings = model_cells(data)
    out = []
    for o in s["opponents"]:
        value = o[metric]
        if value is None:
            continue
        key = ("winrate", version, o["opponent"], tuple(sorted(evaluators.items())), s.get("tie_tolerance"))

        def table(o: Mapping[str, Any] = o) -> Table:
            formula = "(W + 0.5 T) / N" if metric == "win_rate" else "W / (W + L)"
            return Table(
                f"Win rate against {o['opponent']}: {metric} (metric {version})",
                f"{metric} = {formula}, {source}.",
                metric,
                DECIMALS["winrate"],
                ["W", "T", "L", other],
            )

        ci = o["bootstrap_ci"] if metric == "win_rate" else o["wilson_ci"]
        extras = {"W": str(o["wins"]), "T": str(o["ties"]), "L": str(o["losses"]), other: fmt(o[other], 3)}
        out.append((key, table, Row(name, model, settings, value, ci, o["n"], extras)))
    return out


# ------------------------------------------------------------------------------------------- bradley_terry


def check_bradley_terry(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """Not exactly one of ``judge``/``scorer``; ``model_name`` not among the ratings; ratings whose mean is
    not 1000 within 0.5. The L2-regularised fit without intercept (GenAI-Arena's definition, which
    ``eval winrate`` uses) gives coefficients that sum to zero, so ratings = 400 coef + 1000 average
    exactly 1000 over all models of the fit: a different mean means a model was left out or the ratings
    were shifted."""
    s = entry["summary"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out = check_judge_or_scorer(prefix, entry["evaluators"])
    ratings = s["ratings"]
    if s["model_name"] not in ratings:
        out.append(
            (
                at("summary", "model_name"),
                f"{s['model_name']!r} is not among the rated models ({', '.join(ratings)})",
            )
        )
    for name, r in ratings.items():
        out += check_ci(
            (*prefix, "summary", "ratings", name, "ci"), r["ci"], r["rating"], "rating", RATING_TOLERANCE
        )
    mean = sum(r["rating"] for r in ratings.values()) / len(ratings)
    if abs(mean - 1000) > RATING_TOLERANCE:
        out.append(
            (
                at("summary", "ratings"),
                f"the ratings average {mean:.2f}, not 1000: the fit centres every model "
                "it rates on 1000, so a model is missing or the ratings were shifted",
            )
        )
    return out


def bradley_terry_rows(
    name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str
) -> list[Any]:
    s = entry["summary"]
    version, sha = entry["metric_version"], entry["results"]["sha256"]
    key = ("bradley_terry", version, tuple(sorted(entry["evaluators"].items())), sha)
    own = s["ratings"][s["model_name"]]

    def table() -> Table:
        return Table(
            f"Bradley-Terry rating (metric {version}), fit {sha[:12]}",
            f"Ratings from one fit over {len(s['ratings'])} models and {entry['n']} battles; "
            f"{evaluators_text(entry)}.",
            metric,
            DECIMALS["bradley_terry"],
            ["name in fit"],
        )

    model, settings = model_cells(data)
    return [
        (
            key,
            table,
            Row(
                name, model, settings, own["rating"], own["ci"], entry["n"], {"name in fit": s["model_name"]}
            ),
        )
    ]


WINRATE = Benchmark(
    name="winrate",
    title="Win rates",
    metrics=("win_rate", "decisive_win_rate"),
    check=check_winrate,
    rows=winrate_rows,
)
BRADLEY_TERRY = Benchmark(
    name="bradley_terry",
    title="Bradley-Terry",
    metrics=("rating",),
    check=check_bradley_terry,
    rows=bradley_terry_rows,
)

EVALUATOR = Evaluator(
    name="winrate",
    help="model A vs B (or N models): wins/ties/losses, CIs, Bradley-Terry",
    add_arguments=add_arguments,
    run=run,
    summary_file="winrate_summary.json",
    summary_fields=(
        "benchmark",
        "models",
        "judge",
        "scorer",
        "tie_tolerance",
        "n_prompts",
        "n_compared",
        "skipped_prompts",
        "excluded_nan",
        "pairs",
        "provenance",
    ),
    report=report,
    benchmarks=(WINRATE, BRADLEY_TERRY),
    entries=entries,
    submission_summary=submission_summary,
)
