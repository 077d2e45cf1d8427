"""Ranked leaderboard tables (Markdown and HTML) from a folder of submissions.

Every file is validated first; if any is invalid, nothing is rendered and the :class:`SubmissionError` lists
each invalid file with its first problem. Valid submissions that lack the chosen benchmark or metric are not
ranked and are named in a note under the tables, so no file disappears silently.

One table holds numbers measured with one instrument: the same metric version and evaluator models, and
for HPS the same checkpoint and antialiasing, for win rates the same opponent, judge or scorer and tie
tolerance, for Bradley-Terry the same fit (the same battles file). Anything else gets its own table, so HPS
v2.0 and v2.1 are never ranked together. Higher is better for every metric here; rows that show the same
value at the displayed precision share a rank (1, 2, 2, 4). Each benchmark's rows, title and metrics are
its entry in the evaluator registry (:mod:`visionprefer.evaluate.registry`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .schema import SubmissionError, load_submission
from .table import Table, fmt


def render_leaderboard(
    folder_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    benchmark: str = "hpsv2",
    metric: str | None = None,
) -> tuple[str, str]:
    """Rank the submissions of a folder (or a list of files) by one benchmark metric; returns
    ``(markdown, html)``.

    A folder contributes every ``*.json`` directly inside it and every ``*/submission.json`` one level down.
    ``metric`` defaults to the benchmark's headline (the first of its registry entry's ``metrics``): hpsv2 ``average`` (or a style), tifa ``tifa_average``
    (or an element type of ``accuracy_by_type``), score ``clip`` (``aesthetic``, ``pickscore``), winrate
    ``win_rate`` (``decisive_win_rate``), bradley_terry ``rating``.
    """
    from ..evaluate.registry import benchmarks

    known = benchmarks()
    if benchmark not in known:
        raise ConfigError(
            f"leaderboard render: unknown benchmark {benchmark!r}; choose from {', '.join(known)}"
        )
    bench = known[benchmark]
    metric = metric or bench.metrics[0]
    if not bench.open_metrics and metric not in bench.metrics:
        raise ConfigError(
            f"leaderboard render: unknown {benchmark} metric {metric!r}; choose from {', '.join(bench.metrics)}"
        )
    submissions = _load_all(_submission_files(folder_or_paths))
    tables: dict[Any, Table] = {}
    unranked: list[str] = []
    for name, data in submissions:
        entry = data["benchmarks"].get(benchmark)
        if entry is None:
            unranked.append(f"{name} (no {benchmark} entry)")
            continue
        found = bench.rows(name, data, entry, metric)
        if not found:
            unranked.append(f"{name} (no {metric} in its {benchmark} entry)")
        for key, make_table, row in found:
            if key not in tables:
                tables[key] = make_table()
            tables[key].rows.append(row)
    ordered = [tables[k] for k in sorted(tables, key=repr)]
    for table in ordered:
        _rank(table)
    heading = f"Leaderboard: {bench.title}, ranked by {metric}"
    return _markdown(heading, ordered, unranked), _html(heading, ordered, unranked)


# --------------------------------------------------------------------------------------------------- loading


def _submission_files(folder_or_paths: Any) -> list[tuple[str, Path]]:
    targets = [folder_or_paths] if isinstance(folder_or_paths, str | os.PathLike) else list(folder_or_paths)
    out: list[tuple[str, Path]] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found = sorted(path.glob("*.json")) + sorted(path.glob("*/submission.json"))
            if not found:
                raise SubmissionError(
                    [(None, "no submission files (*.json or */submission.json)")], file=str(path)
                )
            out += [(p.relative_to(path).as_posix(), p) for p in found]
        else:
            out.append((str(target), path))
    if not out:
        raise ConfigError("leaderboard render: no submission files given")
    return out


def _load_all(files: list[tuple[str, Path]]) -> list[tuple[str, dict[str, Any]]]:
    loaded, failed = [], []
    for name, path in files:
        try:
            loaded.append((name, load_submission(path)))
        except SubmissionError as e:
            failed.append((name, e))
    if failed:
        problems = [(None, f"{name}: {e}") for name, e in failed]
        listing = "; ".join(f"{name}: {str(e).removeprefix(str(e.file) + ': ')}" for name, e in failed)
        raise SubmissionError(
            problems,
            message=f"{len(failed)} of {len(files)} submissions are invalid, nothing rendered: {listing}",
        )
    return loaded


def _rank(table: Table) -> None:
    shown = lambda row: round(row.value, table.decimals)  # noqa: E731
    table.rows.sort(key=lambda r: (-shown(r), r.model, r.file))
    for i, row in enumerate(table.rows):
        previous = table.rows[i - 1] if i else None
        row.rank = previous.rank if previous is not None and shown(previous) == shown(row) else i + 1


# ------------------------------------------------------------------------------------------------- rendering


def _ci_header_and_cells(table: Table) -> tuple[str, list[str]]:
    kinds = {(r.ci["level"], r.ci["method"]) for r in table.rows if r.ci is not None}
    uniform = len(kinds) == 1
    header = f"{_percent(next(iter(kinds))[0])} CI ({next(iter(kinds))[1]})" if uniform else "CI"
    cells = []
    for r in table.rows:
        if r.ci is None:
            cells.append("–")
            continue
        text = f"[{r.ci['low']:.{table.decimals}f}, {r.ci['high']:.{table.decimals}f}]"
        cells.append(text if uniform else f"{text} ({_percent(r.ci['level'])} {r.ci['method']})")
    return header, cells


def _percent(level: float) -> str:
    return f"{level * 100:g}%"


def _table_cells(table: Table) -> tuple[list[str], list[list[str]]]:
    ci_header, ci_cells = _ci_header_and_cells(table)
    header = ["Rank", "Model", "Settings", table.metric, ci_header, *table.extra_columns, "n", "Submission"]
    body = [
        [
            str(r.rank),
            r.model,
            r.settings,
            fmt(r.value, table.decimals),
            ci,
            *(r.extras[c] for c in table.extra_columns),
            str(r.n),
            r.file,
        ]
        for r, ci in zip(table.rows, ci_cells, strict=True)
    ]
    return header, body


def _numeric(index: int, header: str) -> bool:
    """Right-aligned columns: everything but the text columns and the CI."""
    return index != 4 and header not in ("Model", "Settings", "Submission", "name in fit", "Wilson CI")


_FOOTER = "Higher is better. Rows that show the same value share a rank."


def _markdown(heading: str, tables: Iterable[Table], unranked: list[str]) -> str:
    lines = [f"# {_md(heading)}", ""]
    for table in tables:
        header, body = _table_cells(table)
        lines += [f"## {_md(table.title)}", "", f"{_md(table.description)} {_FOOTER}", ""]
        lines.append("| " + " | ".join(_md(h) for h in header) + " |")
        lines.append("|" + "|".join("---:" if _numeric(i, h) else "---" for i, h in enumerate(header)) + "|")
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in body]
        lines.append("")
    if not tables:
        lines += ["No submission has this benchmark metric.", ""]
    if unranked:
        lines += [f"Not ranked: {_md('; '.join(unranked))}.", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text for a Markdown table cell or heading: one line, HTML-escaped, and with the punctuation that could
    emphasise, link, split a cell or open code escaped. A lone bracket stays readable: "[0.58, 0.69]"."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*{}|#~])", r"\\\1", text)
    text = re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text)  # intraword underscores never emphasise
    return text.replace("[", "\\[").replace("]", "\\]") if "](" in text or "][" in text else text


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #555; }
""".strip()


def _html(heading: str, tables: Iterable[Table], unranked: list[str]) -> str:
    """The HTML page: ``leaderboard/templates/leaderboard.html.j2`` rendered by Jinja2 with autoescape."""
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    template = env.from_string(
        files(__package__).joinpath("templates", "leaderboard.html.j2").read_text("utf-8")
    )
    rows = []
    for table in tables:
        header, body = _table_cells(table)
        rows.append(
            {
                "title": table.title,
                "description": table.description,
                "header": header,
                "body": body,
                "numeric": {i for i, h in enumerate(header) if _numeric(i, h)},
            }
        )
    return template.render(heading=heading, tables=rows, unranked=unranked, footer=_FOOTER, css=_CSS)
