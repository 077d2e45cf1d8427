"""Leaderboard submissions from the summaries the ``eval`` commands write (``--submission FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _tifa_entry(s: dict[str, Any], out: Path) -> dict[str, Any]:
    return {
        "metric_version": "v1.0",
        "evaluators": {"vqa_model": s["vqa_model"], "similarity_model": s["similarity_model"]},
        "n": s["n_captions"],
        "summary": {
            k: s[k] for k in ("tifa_average", "tifa_stdev", "accuracy_by_type", "n_captions", "n_questions")
        },
        "results": str(out / "tifa_items.jsonl"),
    }


def _score_entry(s: dict[str, Any], out: Path) -> dict[str, Any]:
    reported = {
        k: v for k, v in s["means"].items() if k in ("clip", "aesthetic", "pickscore") and v is not None
    }
    if not reported:
        raise ConfigError(
            "--submission: the score benchmark of a submission needs clip, aesthetic or pickscore"
        )
    return {
        "metric_version": "v1",
        "evaluators": {k: s["models"][k] for k in reported},
        "n": s["n_scored"],
        "summary": {k: {"mean": v} for k, v in reported.items()},
        "results": str(out / "score_items.jsonl"),
    }


def _hpsv2_entry(s: dict[str, Any], out: Path) -> dict[str, Any]:
    from ..evaluate.hpsv2 import incomplete_reason

    reason = incomplete_reason(s)
    if reason is not None:
        raise ConfigError(reason)
    return {
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


def _winrate_entries(s: dict[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    """Entries for the first model (``--a``, or the first ``--model-dir``) against every opponent."""
    from .schema import bradley_terry_ratings, opponent_entry

    first = next(iter(s["models"]))
    evaluators = {"judge": s["judge"]} if s["judge"] else {"scorer": s["scorer"]}
    opponents = [
        opponent_entry(name.split(" vs ", 1)[1], row)
        for name, row in s["pairs"].items()
        if name.split(" vs ", 1)[0] == first
    ]
    entries = {
        "winrate": {
            "metric_version": "v1",
            "evaluators": evaluators,
            "n": sum(o["n"] for o in opponents),
            "summary": {"tie_tolerance": s["tie_tolerance"], "opponents": opponents},
            "results": str(out / "winrate_items.jsonl"),
        }
    }
    if s.get("bradley_terry"):
        entries["bradley_terry"] = {
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
    return entries


ENTRIES = {"tifa": _tifa_entry, "score": _score_entry, "hpsv2": _hpsv2_entry}


def write_eval_submission(
    benchmark: str, summary: dict[str, Any], out_dir: str | Path, submission_path: str | Path
) -> Path:
    from .schema import build_submission, write_submission

    if benchmark not in ENTRIES and benchmark != "winrate":
        raise ConfigError(f"--submission: not available for `eval {benchmark}` yet")
    if not summary.get("model"):
        raise ConfigError(
            "--submission needs the model's generation settings: use --model (or, for winrate, "
            "--model-info FILE with the model's description as JSON)"
        )
    out = Path(out_dir).resolve()
    path = Path(submission_path).resolve()
    if benchmark == "winrate":
        entries = _winrate_entries(summary, out)
    else:
        entries = {benchmark: ENTRIES[benchmark](summary, out)}
    submission = build_submission(summary["model"], entries, path.parent)
    return write_submission(submission, path)
