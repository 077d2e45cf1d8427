"""Building blocks of the per-benchmark submission checks: JSON paths for messages, number formatting,
rounding tolerances and the confidence-interval check. Every benchmark's semantic check (its registry
entry's ``check``, see :mod:`visionprefer.evaluate.registry`) reports problems with these, so messages read
alike whichever benchmark they come from.

This module imports nothing heavy and no other part of visionprefer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: ``(field, message)``: ``field`` is a JSON path (``benchmarks.hpsv2.summary.average``), or None for the file.
Problem = tuple[str | None, str]

#: Values computed from integer counts (win rates) may be rounded to three decimals.
RATE_TOLERANCE = 5e-4
#: HPS averages on the 100 x cosine scale may be rounded to two decimals, as are their inputs.
SCORE_TOLERANCE = 0.01
#: Bradley-Terry ratings may be rounded to whole points.
RATING_TOLERANCE = 0.5

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def field(path: Iterable[Any]) -> str:
    """A JSON path for messages: ``benchmarks.hpsv2.styles.anime.mean``, ``opponents[0]``,
    ``accuracy_by_type["animal/human"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def show(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json_type(value)
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{json_type(value)} {text}" if value is not None else "null"


def num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def check_ci(
    path: tuple[Any, ...], ci: Mapping[str, Any], estimate: float, name: str, tol: float
) -> list[Problem]:
    """A confidence interval at ``path``: ``low`` <= ``high``, a bootstrap states its resamples, and the
    interval contains its ``estimate`` (called ``name`` in the message) within ``tol``."""
    out: list[Problem] = []
    low, high = ci["low"], ci["high"]
    if ci["method"].startswith("bootstrap") and "n_resamples" not in ci:
        out.append((field((*path, "n_resamples")), "missing: a bootstrap CI states its number of resamples"))
    if low > high:
        out.append((field((*path, "low")), f"{num(low)} is above high {num(high)}"))
    elif not low - tol <= estimate <= high + tol:
        out.append(
            (
                field(path),
                f"[{num(low)}, {num(high)}] does not contain its estimate {name} = {num(estimate)}",
            )
        )
    return out


def check_judge_or_scorer(prefix: tuple[Any, ...], evaluators: Mapping[str, Any]) -> list[Problem]:
    """Preference benchmarks name exactly one source of judgments."""
    if ("judge" in evaluators) == ("scorer" in evaluators):
        return [
            (
                field((*prefix, "evaluators")),
                'give exactly one of "judge" (the VLM judge\'s model id) or "scorer" (the reward model id)',
            )
        ]
    return []
