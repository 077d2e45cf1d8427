"""Ranked leaderboard tables (Markdown and HTML) from a folder of submissions.

Every file is validated first; if any is invalid, nothing is rendered and the :class:`SubmissionError` lists
each invalid file with its first problem. Valid submissions that lack the chosen benchmark or metric are not
ranked and are named in a note under the tables, so no file disappears silently.

One table holds numbers measured with one instrument: the same metric version and evaluator models, and
for HPS the same checkpoint and antialiasing, for win rates the same opponent, judge or scorer and tie
tolerance, for Bradley-Terry the same fit (the same battles file). Anything else gets its own table, so HPS
v2.0 and v2.1 are never ranked together. Higher is better for every metric here; rows that show the same
value at the displayed precision share a rank (1, 2, 2, 4).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .schema import BENCHMARKS, HPS_STYLES, SubmissionError, load_submission

SCORE_METRICS = ("clip", "aesthetic", "pickscore")
METRICS: dict[str, tuple[str, ...]] = {
    "hpsv2": ("average", *HPS_STYLES),
    "tifa": ("tifa_average",),  # or any element type of accuracy_by_type
    "score": SCORE_METRICS,
    "winrate": ("win_rate", "decisive_win_rate"),
    "bradley_terry": ("rating",),
}
TITLES = {
    "hpsv2": "HPS",
    "tifa": "TIFA",
    "score": "Scores",
    "winrate": "Win rates",
    "bradley_terry": "Bradley-Terry",
}
_DECIMALS = {
    "hpsv2": 2,
    "tifa": 3,
    "winrate": 3,
    "bradley_terry": 1,
    "clip": 2,
    "aesthetic": 3,
    "pickscore": 2,
}


@dataclass
class _Row:
    file: str
    model: str
    settings: str
    value: float
    ci: Mapping[str, Any] | None
    n: int
    extras: dict[str, str] = field(default_factory=dict)
    rank: int = 0


@dataclass
class _Table:
    title: str
    description: str
    metric: str
    decimals: int
    extra_columns: list[str]
    rows: list[_Row] = field(default_factory=list)


def render_leaderboard(
    folder_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    benchmark: str = "hpsv2",
    metric: str | None = None,
) -> tuple[str, str]:
    """Rank the submissions of a folder (or a list of files) by one benchmark metric; returns
    ``(markdown, html)``.

    A folder contributes every ``*.json`` directly inside it and every ``*/submission.json`` one level down.
    ``metric`` defaults to the benchmark's headline: hpsv2 ``average`` (or a style), tifa ``tifa_average``
    (or an element type of ``accuracy_by_type``), score ``clip`` (``aesthetic``, ``pickscore``), winrate
    ``win_rate`` (``decisive_win_rate``), bradley_terry ``rating``.
    """
    if benchmark not in BENCHMARKS:
        raise ConfigError(
            f"leaderboard render: unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}"
        )
    metric = metric or METRICS[benchmark][0]
    if benchmark != "tifa" and metric not in METRICS[benchmark]:
        raise ConfigError(
            f"leaderboard render: unknown {benchmark} metric {metric!r}; choose from {', '.join(METRICS[benchmark])}"
        )
    submissions = _load_all(_submission_files(folder_or_paths))
    tables: dict[tuple[Any, ...], _Table] = {}
    unranked: list[str] = []
    for name, data in submissions:
        entry = data["benchmarks"].get(benchmark)
        if entry is None:
            unranked.append(f"{name} (no {benchmark} entry)")
            continue
        found = _ROWS[benchmark](name, data, entry, metric)
        if not found:
            unranked.append(f"{name} (no {metric} in its {benchmark} entry)")
        for key, make_table, row in found:
            if key not in tables:
                tables[key] = make_table()
            tables[key].rows.append(row)
    ordered = [tables[k] for k in sorted(tables, key=repr)]
    for table in ordered:
        _rank(table)
    heading = f"Leaderboard: {TITLES[benchmark]}, ranked by {metric}"
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


# ------------------------------------------------------------------------------------------------------ rows


def _model_cells(data: Mapping[str, Any]) -> tuple[str, str]:
    m = data["model"]
    model = m["id"] + (f"@{m['revision'][:12]}" if m["revision"] else "")
    res = m["resolution"]
    settings = (
        f"{m['steps']} steps, CFG {m['guidance_scale']:g}, {res['height']}x{res['width']}, {m['dtype']}"
    )
    return model, settings


def _fmt(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def _evaluators(entry: Mapping[str, Any]) -> str:
    return ", ".join(f"{role} {model_id}" for role, model_id in entry["evaluators"].items())


def _hpsv2_rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    version = entry["metric_version"]
    values = {"average": s["average"], **{k: s["styles"][k]["mean"] for k in HPS_STYLES}}
    key = ("hpsv2", version, s["checkpoint"], s["antialias"], tuple(sorted(entry["evaluators"].items())))
    extras = [k for k in values if k != metric]

    def table() -> _Table:
        return _Table(
            title=f"HPS {version}: {metric}",
            description=f"Checkpoint {s['checkpoint']}, antialiased resize {'on' if s['antialias'] else 'off'}; "
            f"{_evaluators(entry)}. Scores are 100 x cosine.",
            metric=metric,
            decimals=_DECIMALS["hpsv2"],
            extra_columns=extras,
        )

    model, settings = _model_cells(data)
    ci = s.get("average_ci") if metric == "average" else None
    row = _Row(name, model, settings, values[metric], ci, entry["n"], {k: _fmt(values[k], 2) for k in extras})
    return [(key, table, row)]


def _tifa_rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    if metric == "tifa_average":
        value, ci = s["tifa_average"], s.get("tifa_average_ci")
        extras = {"stdev": _fmt(s["tifa_stdev"], 3), "questions": str(s["n_questions"])}
    elif metric in s["accuracy_by_type"]:
        value, ci = s["accuracy_by_type"][metric], None
        extras = {"tifa_average": _fmt(s["tifa_average"], 3), "questions": str(s["n_questions"])}
    else:
        return []
    version = entry["metric_version"]
    key = ("tifa", version, tuple(sorted(entry["evaluators"].items())))

    def table() -> _Table:
        what = (
            "TIFA score (mean over captions)"
            if metric == "tifa_average"
            else f"accuracy on {metric} questions"
        )
        return _Table(
            f"TIFA {version}: {metric}",
            f"{what}; {_evaluators(entry)}.",
            metric,
            _DECIMALS["tifa"],
            list(extras),
        )

    model, settings = _model_cells(data)
    return [(key, table, _Row(name, model, settings, value, ci, entry["n"], extras))]


def _score_rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    if metric not in s:
        return []
    version, evaluator = entry["metric_version"], entry["evaluators"][metric]
    key = ("score", version, metric, evaluator)
    others = [k for k in SCORE_METRICS if k != metric]

    def table() -> _Table:
        return _Table(
            f"{metric} score (metric {version})",
            f"Mean {metric} score with {evaluator}.",
            metric,
            _DECIMALS[metric],
            others,
        )

    model, settings = _model_cells(data)
    extras = {k: _fmt(s[k]["mean"], _DECIMALS[k]) if k in s else "–" for k in others}
    return [
        (key, table, _Row(name, model, settings, s[metric]["mean"], s[metric].get("ci"), entry["n"], extras))
    ]


def _winrate_rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    version, evaluators = entry["metric_version"], entry["evaluators"]
    source = (
        f"judged by {evaluators['judge']} (both orders; disagreement is a tie)"
        if "judge" in evaluators
        else f"scored by {evaluators['scorer']} (tie tolerance {s['tie_tolerance']:g})"
    )
    other = "decisive_win_rate" if metric == "win_rate" else "win_rate"
    model, settings = _model_cells(data)
    out = []
    for o in s["opponents"]:
        value = o[metric]
        if value is None:
            continue
        key = ("winrate", version, o["opponent"], tuple(sorted(evaluators.items())), s.get("tie_tolerance"))

        def table(o: Mapping[str, Any] = o) -> _Table:
            formula = "(W + 0.5 T) / N" if metric == "win_rate" else "W / (W + L)"
            return _Table(
                f"Win rate against {o['opponent']}: {metric} (metric {version})",
                f"{metric} = {formula}, {source}.",
                metric,
                _DECIMALS["winrate"],
                ["W", "T", "L", other],
            )

        ci = o["bootstrap_ci"] if metric == "win_rate" else o["wilson_ci"]
        extras = {"W": str(o["wins"]), "T": str(o["ties"]), "L": str(o["losses"]), other: _fmt(o[other], 3)}
        out.append((key, table, _Row(name, model, settings, value, ci, o["n"], extras)))
    return out


def _bradley_terry_rows(
    name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str
) -> list[Any]:
    s = entry["summary"]
    version, sha = entry["metric_version"], entry["results"]["sha256"]
    key = ("bradley_terry", version, tuple(sorted(entry["evaluators"].items())), sha)
    own = s["ratings"][s["model_name"]]

    def table() -> _Table:
        return _Table(
            f"Bradley-Terry rating (metric {version}), fit {sha[:12]}",
            f"Ratings from one fit over {len(s['ratings'])} models and {entry['n']} battles; {_evaluators(entry)}.",
            metric,
            _DECIMALS["bradley_terry"],
            ["name in fit"],
        )

    model, settings = _model_cells(data)
    return [
        (
            key,
            table,
            _Row(
                name, model, settings, own["rating"], own["ci"], entry["n"], {"name in fit": s["model_name"]}
            ),
        )
    ]


_ROWS = {
    "hpsv2": _hpsv2_rows,
    "tifa": _tifa_rows,
    "score": _score_rows,
    "winrate": _winrate_rows,
    "bradley_terry": _bradley_terry_rows,
}


def _rank(table: _Table) -> None:
    shown = lambda row: round(row.value, table.decimals)  # noqa: E731
    table.rows.sort(key=lambda r: (-shown(r), r.model, r.file))
    for i, row in enumerate(table.rows):
        previous = table.rows[i - 1] if i else None
        row.rank = previous.rank if previous is not None and shown(previous) == shown(row) else i + 1


# ------------------------------------------------------------------------------------------------- rendering


def _ci_header_and_cells(table: _Table) -> tuple[str, list[str]]:
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


def _table_cells(table: _Table) -> tuple[list[str], list[list[str]]]:
    ci_header, ci_cells = _ci_header_and_cells(table)
    header = ["Rank", "Model", "Settings", table.metric, ci_header, *table.extra_columns, "n", "Submission"]
    body = [
        [
            str(r.rank),
            r.model,
            r.settings,
            _fmt(r.value, table.decimals),
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
    return index != 4 and header not in ("Model", "Settings", "Submission", "name in fit")


_FOOTER = "Higher is better. Rows that show the same value share a rank."


def _markdown(heading: str, tables: Iterable[_Table], unranked: list[str]) -> str:
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


def _html(heading: str, tables: Iterable[_Table], unranked: list[str]) -> str:
    e = lambda text: html.escape(str(text), quote=True)  # noqa: E731
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{e(heading)}</title><style>{_CSS}</style></head>',
        "<body>",
        f"<h1>{e(heading)}</h1>",
    ]
    for table in tables:
        header, body = _table_cells(table)
        numeric_cols = {i for i, h in enumerate(header) if _numeric(i, h)}
        parts += [
            "<section>",
            f"<h2>{e(table.title)}</h2>",
            f"<p>{e(table.description)} {e(_FOOTER)}</p>",
            "<table>",
        ]
        parts.append(
            "<thead><tr>" + "".join(f'<th scope="col">{e(h)}</th>' for h in header) + "</tr></thead>"
        )
        parts.append("<tbody>")
        for row in body:
            cells = "".join(
                f'<td class="num">{e(c)}</td>' if i in numeric_cols else f"<td>{e(c)}</td>"
                for i, c in enumerate(row)
            )
            parts.append(f"<tr>{cells}</tr>")
        parts += ["</tbody>", "</table>", "</section>"]
    if not tables:
        parts.append('<p class="note">No submission has this benchmark metric.</p>')
    if unranked:
        parts.append(f'<p class="note">Not ranked: {e("; ".join(unranked))}.</p>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
