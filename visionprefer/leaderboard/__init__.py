"""Leaderboard submissions: one JSON file per model configuration with its benchmark results.

The format (``visionprefer.submission/1``) and its checks are documented in
:mod:`visionprefer.leaderboard.schema`; ranked tables in :mod:`visionprefer.leaderboard.render`.

    from visionprefer.leaderboard import build_submission, write_submission, render_leaderboard
    sub = build_submission(model_meta, {"hpsv2": entry}, out_dir)   # entry["results"] = "hpsv2_items.jsonl"
    write_submission(sub, out_dir / "submission.json")
    markdown, html = render_leaderboard("leaderboard/", benchmark="hpsv2")

Importing this package is cheap: its modules load on first attribute access, ``jsonschema`` on the first
validation, torch only when :func:`build_submission` is asked to detect the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .render import render_leaderboard
    from .schema import (
        SCHEMA_ID,
        SubmissionError,
        bradley_terry_ratings,
        build_submission,
        effective_schema,
        environment_info,
        load_submission,
        opponent_entry,
        submission_problems,
        submission_schema,
        validate_submission,
        write_submission,
    )

_LAZY = {
    "render_leaderboard": ".render",
    **dict.fromkeys(
        (
            "SCHEMA_ID",
            "SubmissionError",
            "bradley_terry_ratings",
            "build_submission",
            "effective_schema",
            "environment_info",
            "load_submission",
            "opponent_entry",
            "submission_problems",
            "submission_schema",
            "validate_submission",
            "write_submission",
        ),
        ".schema",
    ),
}

__all__ = [
    "SCHEMA_ID",
    "SubmissionError",
    "bradley_terry_ratings",
    "build_submission",
    "effective_schema",
    "environment_info",
    "load_submission",
    "opponent_entry",
    "render_leaderboard",
    "submission_problems",
    "submission_schema",
    "validate_submission",
    "write_submission",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
