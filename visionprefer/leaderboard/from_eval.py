"""Leaderboard submissions from the summaries the ``eval`` commands write (``--submission FILE``).

Which entries an evaluator's summary becomes is its registry entry's ``entries``
(:mod:`visionprefer.evaluate.registry`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def write_eval_submission(
    benchmark: str, summary: Mapping[str, Any], out_dir: str | Path, submission_path: str | Path
) -> Path:
    """Write the submission of ``eval <benchmark>``'s ``summary`` (results files in ``out_dir``) to
    ``submission_path``; returns its path."""
    from ..evaluate.registry import evaluators
    from .schema import build_submission, model_required, write_submission

    ev = evaluators().get(benchmark)
    if ev is None or ev.entries is None:
        raise ConfigError(f"--submission: not available for `eval {benchmark}` yet")
    if not summary.get("model") and model_required(b.name for b in ev.benchmarks):
        raise ConfigError(
            "--submission needs the model's generation settings: use --model (or, for winrate, "
            "--model-info FILE with the model's description as JSON)"
        )
    out = Path(out_dir).resolve()
    path = Path(submission_path).resolve()
    entries = ev.entries(summary, out)
    submission = build_submission(summary.get("model") or None, entries, path.parent)
    return write_submission(submission, path)
