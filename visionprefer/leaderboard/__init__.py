"""Leaderboard submissions: one JSON file per model configuration with its benchmark results.

The format (``visionprefer.submission/1``) and its checks are documented in
:mod:`visionprefer.leaderboard.schema`; ranked tables in :mod:`visionprefer.leaderboard.render`.

    from visionprefer.leaderboard import build_submission, write_submission, render_leaderboard
    sub = build_submission(model_meta, {"hpsv2": entry}, out_dir)   # entry["results"] = "hpsv2_items.jsonl"
    write_submission(sub, out_dir / "submission.json")
    markdown, html = render_leaderboard("leaderboard/", benchmark="hpsv2")

Importing this package is cheap: ``jsonschema`` is imported on the first validation, torch only when
:func:`build_submission` is asked to detect the device.
"""

from __future__ import annotations

from .render import render_leaderboard
from .schema import (
    SCHEMA_ID,
    SubmissionError,
    bradley_terry_ratings,
    build_submission,
    environment_info,
    load_submission,
    opponent_entry,
    submission_problems,
    submission_schema,
    validate_submission,
    write_submission,
)

__all__ = [
    "SCHEMA_ID",
    "SubmissionError",
    "bradley_terry_ratings",
    "build_submission",
    "environment_info",
    "load_submission",
    "opponent_entry",
    "render_leaderboard",
    "submission_problems",
    "submission_schema",
    "validate_submission",
    "write_submission",
]
