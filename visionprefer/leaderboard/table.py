"""Building blocks of leaderboard tables: a benchmark's registry entry turns one submission's entry into
rows with these (its ``rows``, see :mod:`visionprefer.evaluate.registry`), and
:func:`visionprefer.leaderboard.render_leaderboard` ranks and renders them.

A ``rows`` function is called as ``rows(name, data, entry, metric)`` (the submission's file name, the whole
submission, its entry for the benchmark and the metric to rank by) and returns a list of
``(key, make_table, row)``: rows with equal ``key`` go into one table, which ``make_table()`` creates the
first time; the key holds everything that makes two numbers comparable (metric version, evaluator models,
...). An empty list means the entry has no such metric.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    file: str
    model: str
    settings: str
    value: float
    ci: Mapping[str, Any] | None
    n: int
    extras: dict[str, str] = field(default_factory=dict)
    rank: int = 0


@dataclass
class Table:
    title: str
    description: str
    metric: str
    decimals: int
    extra_columns: list[str]
    rows: list[Row] = field(default_factory=list)


RowSpec = tuple[Hashable, Callable[[], Table], Row]


def model_cells(data: Mapping[str, Any]) -> tuple[str, str]:
    """The Model and Settings cells of a submission."""
    m = data["model"]
    model = m["id"] + (f"@{m['revision'][:12]}" if m["revision"] else "")
    res = m["resolution"]
    settings = (
        f"{m['steps']} steps, CFG {m['guidance_scale']:g}, {res['height']}x{res['width']}, {m['dtype']}"
    )
    return model, settings


def fmt(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def evaluators_text(entry: Mapping[str, Any]) -> str:
    return ", ".join(f"{role} {model_id}" for role, model_id in entry["evaluators"].items())
