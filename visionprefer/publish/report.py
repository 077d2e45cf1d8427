"""The build report: a static HTML page with PNG charts in ``<run>/report/``.

Layout::

    <run>/report/index.html                 self-contained page (inline CSS, no scripts, no network)
    <run>/report/scores_by_generator.png    box plots of `overall` and each aspect/metric per generator
    <run>/report/scores_by_cfg.png          the same per classifier-free guidance scale
    <run>/report/score_histogram.png        judge builds: images per rounded score, per aspect
    <run>/report/winrate_by_generator.png   win rate of each generator (from the `overall` pairs)
    <run>/report/winrate_by_cfg.png         win rate against CFG scale
    <run>/report/failures.png               done / failed / pending per stage
    <run>/report/samples/<image_id>.png     thumbnails of the sample grid

These are the analyses VisionPrefer reports (score distributions per model and per CFG scale, win rate
against CFG), plus what a builder needs to judge a run: failures with their reasons, LLM spend, and a grid
of sample images captioned with their scores.

**Win rate.** From the ``overall`` pairs only. For a group value *v* (a generator, or a guidance scale),
every pair whose two images differ in that attribute and one of which has value *v* is a comparison for
*v*: a win when *v*'s image is preferred (``label_0`` says so), a loss when the other is, a tie for
``label_0`` = 0.5. win rate = (W + 0.5·T) / N with N = W + T + L. Pairs whose images share the attribute
(two images of the same generator, or at the same scale) do not count for that attribute.

Every file is written atomically and the output is a function of the run only (no timestamps: PNGs are
saved without the ``Software`` tag and matplotlib writes none), so writing the report twice gives identical
bytes. Charts are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg canvas: pyplot is never
imported, so the caller's matplotlib backend and figure registry are left alone.

The page is the Jinja2 template ``publish/templates/report.html.j2`` rendered with autoescaping: text from
the run (prompts, explanations, failure reasons, generator names) is untrusted and reaches the page only as
escaped text; a Content-Security-Policy forbids scripts altogether. The statistics (win rates and their
intervals, from :mod:`visionprefer.evaluate.stats`) and the charts are computed here; the template only
lays them out.
"""

from __future__ import annotations

import io
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from ..annotate.judge import judge_name
from ..config import ASPECTS, METRICS, BuildConfig
from ..rundir import RunDir, atomic_write_bytes, atomic_write_text
from .data import SAMPLE_PROMPTS, FeedbackSummary, feedback_summary
from .data import score_value as score_value
from .state import select

REPORT_DIR = "report"
REPORT_TEMPLATE = "report.html.j2"  # in publish/templates/, shipped in the wheel
SAMPLES_DIR = "samples"
SAMPLE_IMAGES_PER_PROMPT = 12
THUMB_SIDE = 256
POINTS_LIMIT = 400  # jittered points over a box plot only for groups up to this size

ASPECT_ABBREV = {"prompt_following": "PF", "fidelity": "FI", "aesthetic": "AE", "harmlessness": "HA"}
METRIC_NAMES = METRICS

# A colour-blind-safe palette (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def report_dir(run: RunDir) -> Path:
    return run.root / REPORT_DIR


# --------------------------------------------------------------------------------------------- numbers
def score_columns(feedback: dict[str, dict[str, Any]] | FeedbackSummary) -> list[tuple[str, str]]:
    """(label, field) of every score the feedback has: ``overall``, then judge aspects or metrics."""
    if isinstance(feedback, FeedbackSummary):
        return feedback.columns()
    cols = [("overall", "overall")]
    rows = list(feedback.values())
    for aspect in ASPECTS:
        if any(r.get(aspect) for r in rows):
            cols.append((aspect, aspect))
    for name in METRIC_NAMES:
        if any((r.get("metrics") or {}).get(name) is not None for r in rows):
            cols.append((f"metrics.{name}", f"metrics.{name}"))
    return cols


def win_rates(pairs: list[dict[str, Any]], attribute: Any) -> dict[Any, dict[str, Any]]:
    """Wins, ties, losses and win rate per value of ``attribute(pair, side)`` over the given pairs.

    A pair counts for both of its values when they differ and for neither when they are equal.
    win rate = (W + 0.5·T) / N.
    """
    table: dict[Any, dict[str, Any]] = defaultdict(lambda: {"wins": 0, "ties": 0, "losses": 0})
    for p in pairs:
        v0, v1 = attribute(p, 0), attribute(p, 1)
        if v0 == v1:
            continue
        label = float(p["label_0"])
        if label == 0.5:
            table[v0]["ties"] += 1
            table[v1]["ties"] += 1
        elif label == 1.0:
            table[v0]["wins"] += 1
            table[v1]["losses"] += 1
        else:
            table[v1]["wins"] += 1
            table[v0]["losses"] += 1
    out = {}
    for value, row in table.items():
        summary = win_rate_of(row)
        out[value] = {**row, "n": summary.n, "win_rate": summary.win_rate, "ci": summary.bootstrap_ci}
    return out


CONFIDENCE = 0.95
N_BOOTSTRAP = 1000


def win_rate_of(row: dict[str, int]) -> Any:
    """:func:`visionprefer.evaluate.stats.win_rate_summary` of a row's wins, ties and losses: the win
    rate (W + 0.5·T) / N and its 95% paired-bootstrap interval (each comparison is two images of one prompt,
    resampled together; 1,000 resamples, seed 0, so the report stays a function of the run)."""
    from ..evaluate.stats import win_rate_summary

    outcomes = [1] * row["wins"] + [0] * row["ties"] + [-1] * row["losses"]
    return win_rate_summary(outcomes, confidence=CONFIDENCE, n_bootstrap=N_BOOTSTRAP, seed=0)


def format_ci(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def head_to_head(pairs: list[dict[str, Any]], attribute: Any) -> dict[tuple[Any, Any], dict[str, Any]]:
    """Win rate of value A over value B, for every ordered pair of different values that met."""
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for p in pairs:
        v0, v1 = attribute(p, 0), attribute(p, 1)
        if v0 == v1:
            continue
        label = float(p["label_0"])
        for a, b, score in ((v0, v1, label), (v1, v0, 1.0 - label)):
            row = out.setdefault((a, b), {"points": 0.0, "n": 0, "wins": 0, "ties": 0, "losses": 0})
            row["points"] += score
            row["n"] += 1
            row["wins" if score == 1.0 else "losses" if score == 0.0 else "ties"] += 1
    for row in out.values():
        summary = win_rate_of(row)
        row["win_rate"], row["ci"] = summary.win_rate, summary.bootstrap_ci
    return out


# --------------------------------------------------------------------------------------------- charts
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _box_chart(
    groups: list[str],
    values: dict[str, dict[str, list[float]]],
    columns: list[tuple[str, str]],
    xlabel: str,
    ylim: tuple[float, float] | None,
) -> bytes:
    """One panel per score column; one box (with jittered points for small groups) per group value."""
    import numpy as np

    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    width = max(4.2 * ncols, 1.2 * len(groups) * ncols)
    fig = _figure(min(width, 16), 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    rng = np.random.default_rng(0)
    for i, (label, field) in enumerate(columns):
        ax = axes[i // ncols][i % ncols]
        data = [values[field].get(g, []) for g in groups]
        positions = [j for j, d in enumerate(data) if d]
        points = all(len(data[j]) <= POINTS_LIMIT for j in positions)
        if positions:
            bp = ax.boxplot(
                [data[j] for j in positions],
                positions=positions,
                widths=0.55,
                patch_artist=True,
                showmeans=True,
                meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
                medianprops={"color": "black"},
                flierprops={"markersize": 3},
                showfliers=not points,
            )
            for k, patch in zip(positions, bp["boxes"], strict=True):
                patch.set_facecolor(PALETTE[k % len(PALETTE)])
                patch.set_alpha(0.45)
            for j in positions if points else []:
                x = j + rng.uniform(-0.18, 0.18, len(data[j]))
                ax.scatter(x, data[j], s=9, color=PALETTE[j % len(PALETTE)], alpha=0.8, zorder=3)
        ax.set_xticks(range(len(groups)), [_short(g) for g in groups], rotation=20 if len(groups) > 3 else 0)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", alpha=0.3)
        if ylim and not field.startswith("metrics."):
            ax.set_ylim(*ylim)
    for k in range(len(columns), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    return _png(fig)


def _histogram_chart(distribution: dict[str, Any], lo: int, hi: int) -> bytes:
    """Images per rounded score of each aspect (``distribution[aspect][score]``), from ``lo`` to ``hi``."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    scores = list(range(lo, hi + 1))
    fig = _figure(7.5, 3.4)
    ax = fig.subplots()
    width = 0.8 / len(ASPECTS)
    for i, aspect in enumerate(ASPECTS):
        counts = [distribution[aspect].get(s, 0) for s in scores]
        x = np.arange(len(scores)) + (i - (len(ASPECTS) - 1) / 2) * width
        ax.bar(x, counts, width, label=aspect, color=PALETTE[i])
    ax.set_xticks(range(len(scores)), [str(s) for s in scores])
    ax.set_xlabel("score (rounded)")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _error_bars(values: list[float], cis: list[tuple[float, float] | None]) -> list[list[float]]:
    """Asymmetric error bars (below, above) of each value from its interval (none: zero length)."""
    return [
        [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis, strict=True)],
        [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis, strict=True)],
    ]


def _winrate_bar_chart(names: list[str], rates: dict[str, dict[str, Any]]) -> bytes:
    fig = _figure(7.5, 0.9 + 0.45 * len(names))
    ax = fig.subplots()
    y = list(range(len(names)))[::-1]
    values = [rates[n]["win_rate"] for n in names]
    ax.barh(
        y,
        values,
        xerr=_error_bars(values, [rates[n]["ci"] for n in names]),
        error_kw={"ecolor": "black", "capsize": 3, "linewidth": 1},
        color=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
        height=0.6,
    )
    for yi, n, v in zip(y, names, values, strict=True):
        ci = rates[n]["ci"]
        right = ci[1] if ci else v
        ax.text(
            min(right + 0.01, 0.8),
            yi,
            f"{v:.3f} {format_ci(ci)}  (N={rates[n]['n']})",
            va="center",
            fontsize=8,
        )
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [_short(n) for n in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate = (W + 0.5·T) / N, with its 95% bootstrap interval")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _winrate_cfg_chart(scales: list[float], rates: dict[float, dict[str, Any]]) -> bytes:
    fig = _figure(7.5, 3.4)
    ax = fig.subplots()
    values = [rates[s]["win_rate"] for s in scales]
    ax.errorbar(
        scales,
        values,
        yerr=_error_bars(values, [rates[s]["ci"] for s in scales]),
        marker="o",
        color=PALETTE[0],
        ecolor="black",
        capsize=3,
        elinewidth=1,
    )
    for s, v in zip(scales, values, strict=True):
        ax.annotate(
            f"{v:.3f} {format_ci(rates[s]['ci'])} (N={rates[s]['n']})",
            (s, v),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(scales, [f"{s:g}" for s in scales])
    ax.margins(x=0.12)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("classifier-free guidance scale")
    ax.set_ylabel("win rate (W + 0.5·T) / N, 95% interval")
    ax.grid(alpha=0.3)
    return _png(fig)


def _failures_chart(rows: list[tuple[str, int, int, int, int]]) -> bytes:
    """rows: (stage, done, failed, pending, filtered) as stacked horizontal bars."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7.5, 0.9 + 0.5 * len(rows))
    ax = fig.subplots()
    y = list(range(len(rows)))[::-1]
    left = [0] * len(rows)
    parts = (("done", 1, "#009E73"), ("failed", 2, "#D55E00"), ("pending", 3, "#999999"))
    parts += (("filtered", 4, "#E69F00"),)
    for name, idx, colour in parts:
        widths = [r[idx] for r in rows]
        if any(widths):
            ax.barh(y, widths, left=left, color=colour, label=name, height=0.6)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    for yi, r in zip(y, rows, strict=True):
        ax.text(
            0, yi + 0.36, f"{r[1]} done, {r[2]} failed, {r[3]} pending", fontsize=8, va="bottom", ha="left"
        )
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.1)
    ax.set_xlabel("items")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _short(value: Any, n: int = 22) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------------- formatting
def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _scale(x: Any) -> str:
    return f"{x:g}" if isinstance(x, int | float) else str(x)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 .3em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em}
.meta{color:#555}.warn{background:#fff4ce;border:1px solid #e6c200;padding:.6em .9em;border-radius:6px}
.note{color:#555;font-style:italic}
table{border-collapse:collapse;margin:.5em 0 1em;background:#fff;font-size:.92em}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num,th.num{text-align:right}
img.chart{max-width:100%;border:1px solid #e5e5e5;background:#fff;margin:.3em 0}
code,.formula{font-family:ui-monospace,"DejaVu Sans Mono",monospace;background:#f0f0f0;padding:1px 4px;
border-radius:3px}
.formula{display:inline-block;padding:4px 8px;margin:.2em 0}
.prompt{margin:1.2em 0 .4em;font-weight:600;overflow-wrap:anywhere}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:160px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figure img{width:148px;height:148px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block}
figcaption{font-size:.78em;margin-top:4px;overflow-wrap:anywhere}
.rank1{border-color:#009E73;box-shadow:0 0 0 2px #009E73}
"""


# --------------------------------------------------------------------------------------------- report
def write_report(
    config: BuildConfig,
    run: RunDir,
    *,
    status: dict[str, Any],
    data: dict[str, Any] | None = None,
) -> Path:
    """Write ``<run>/report/index.html`` and its PNG charts and thumbnails; returns the page's path.

    ``data`` is what :func:`visionprefer.publish.data.collect` returns (collected here when omitted; its
    ``feedback`` is read once, into a :class:`~visionprefer.publish.data.FeedbackSummary`);
    ``status`` is :func:`visionprefer.stages.run_status` of the run.
    """
    from matplotlib import rc_context

    from .. import __version__
    from ..generate.plan import resolve_generators

    if data is None:
        from .data import collect

        data = collect(config, run)
    out = report_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()

    def put(name: str, payload: bytes) -> str:
        path = out / name
        atomic_write_bytes(path, payload)
        written.add(path)
        return name

    # ``images`` and ``pairs`` may be records left on disk (collect's StoredRecords), read again on every
    # pass: each pass below keeps only what it needs (sets of names, score lists, a few samples).
    prompts, images, pairs = data["prompts"], data["images"], data["pairs"]
    summary = feedback_summary(data)  # the scores and the sample prompts' feedback, in one pass
    specs = resolve_generators(config.generate)
    tiny = any(s.tiny for s in specs)
    config_order = [s.name for s in specs]
    name_set, scale_set = set(), set()
    for r in images:
        name_set.add(r["generator_name"])
        scale_set.add(r["guidance_scale"])
    names = sorted(
        name_set,
        key=lambda n: (n not in config_order, config_order.index(n) if n in config_order else 0, n),
    )
    scales = sorted(
        scale_set,
        key=lambda s: (not isinstance(s, int | float), s if isinstance(s, int | float) else 0, str(s)),
    )
    ann = config.annotate
    ctx: dict[str, Any] = {"css": CSS, "run_name": Path(config.run_dir).name, "backend": ann.backend}

    with rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10}):
        ctx["scores"] = _scores_context(config, summary, names, scales, status, put)
        ctx["winrates"] = _winrates_context(config, images, pairs, names, scales, put)
        ctx["failures"] = _failures_context(status, put)
        ctx["spend"] = _spend_context(status)
        ctx["calibration"] = _calibration_context(status)
        ctx["samples"] = _samples_context(run, prompts, images, summary, ann, put)
    ctx["head"] = _header(config, run, status, data, summary, names, scales, tiny, __version__)
    index = out / "index.html"
    atomic_write_text(index, report_template().render(**ctx))
    written.add(index)
    _remove_stale(out, written)
    return index


def report_template() -> Any:
    """The page's ``jinja2.Template`` (``publish/templates/report.html.j2``): autoescaped, so every value
    from the run (prompts, explanations, failure reasons, generator names) is HTML text; undefined values are
    errors."""
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    source = files(__package__).joinpath("templates", REPORT_TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(source)


def _scores_context(
    config: BuildConfig,
    summary: FeedbackSummary,
    names: list[str],
    scales: list[Any],
    status: dict[str, Any],
    put: Any,
) -> dict[str, Any] | None:
    if not summary:
        return None
    ann = config.annotate
    columns = summary.columns()
    ylim = None
    if ann.backend == "judge":
        ylim = (ann.judge.score_min - 0.4, ann.judge.score_max + 0.4)
    blocks = []
    for key, groups, title, xlabel, fname in (
        ("generator_name", names, "per model (generator)", "generator", "scores_by_generator.png"),
        ("guidance_scale", scales, "per CFG scale", "guidance scale", "scores_by_cfg.png"),
    ):
        values = summary.values[key]  # array("d") per group: a score in 8 bytes
        src = put(fname, _box_chart(groups, values, columns, xlabel, ylim))
        rows = []
        for g in groups:
            row: list[Any] = [_scale(g), len(values["overall"].get(g, []))]
            for _, f in columns:
                vs = values[f].get(g, [])
                row.append(_fmt(sum(vs) / len(vs)) if vs else "–")
            rows.append(row)
        blocks.append(
            {
                "title": title,
                "src": src,
                "header": [xlabel, "images", *[f"mean {label}" for label, _ in columns]],
                "rows": rows,
                "id": f"scores-{key}",
            }
        )
    histogram = None
    if ann.backend == "judge" and summary.aspects:
        histogram = put(
            "score_histogram.png",
            _histogram_chart(summary.distribution, ann.judge.score_min, ann.judge.score_max),
        )
    effects = (status.get("stages", {}).get("annotate") or {}).get("order_effects")
    if effects and effects["groups"]:
        effects = {
            "groups": effects["groups"],
            "agreement": f"{effects['order_agreement']:.1%}",
            "gain": f"{effects['first_position_gain']:+.3f}",
        }
    else:
        effects = None
    return {"blocks": blocks, "histogram": histogram, "effects": effects}


def _generator_names(images: Iterable[dict[str, Any]]) -> Any:
    """``image_id -> generator_name`` of ``images`` (None for an image not among them; the last record of
    an id wins, as in a dict), held as two sorted NumPy arrays (the id's bytes and a 2-byte code of the
    name: some 22 bytes an image, where a dict of the ids cost about 150)."""
    import numpy as np

    codes: dict[str, int] = {}
    chunks: list[Any] = []
    ids: list[bytes] = []
    names = array("H")

    def flush() -> None:
        if ids:
            chunks.append(np.array(ids))
            ids.clear()

    for r in images:
        ids.append(r["image_id"].encode("utf-8"))
        names.append(codes.setdefault(r["generator_name"], len(codes)))
        if len(ids) >= 65536:
            flush()
    flush()
    by_code = list(codes)
    if not chunks:
        return lambda image_id: None
    keys = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    chunks.clear()
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], np.frombuffer(names, dtype=np.uint16)[order]
    last = np.ones(len(keys), dtype=bool)  # the last of equal ids, as a dict keeps it
    np.not_equal(keys[:-1], keys[1:], out=last[:-1])
    keys, values = keys[last], values[last]
    width = keys.dtype.itemsize

    def lookup(image_id: str) -> str | None:
        encoded = image_id.encode("utf-8")
        if len(encoded) > width:
            return None
        i = int(np.searchsorted(keys, encoded))
        return by_code[values[i]] if i < len(keys) and keys[i] == encoded else None

    return lookup


def _winrates_context(
    config: BuildConfig,
    images: Iterable[dict[str, Any]],
    pairs: Any,
    names: list[str],
    scales: list[Any],
    put: Any,
) -> dict[str, Any] | None:
    overall = select(pairs, lambda p: p["aspect"] == "overall")
    if not overall:
        return None
    # The generator name of the images in these pairs (the pairs carry only the `generator` column).
    generator_name = _generator_names(images)

    def gen_of(p: dict[str, Any], side: int) -> str:
        name = generator_name(p[f"image_id_{side}"])
        return name if name is not None else p[f"generator_{side}"]

    def cfg_of(p: dict[str, Any], side: int) -> Any:
        return p[f"guidance_scale_{side}"]

    mode = (
        "every unordered pair of a prompt's images"
        if config.pairs.mode == "all"
        else "best against worst image of each prompt (so the counts are small and selective)"
    )
    blocks = []
    for title, attr, groups, fname, tid in (
        ("per model", gen_of, names, "winrate_by_generator.png", "winrate-generator"),
        ("against CFG scale", cfg_of, scales, "winrate_by_cfg.png", "winrate-cfg"),
    ):
        rates = win_rates(overall, attr)
        present = [g for g in groups if g in rates]
        what = "model" if attr is gen_of else "CFG scale"
        if not present:
            blocks.append({"title": title, "missing": True, "what": what, "groups": len(groups)})
            continue
        if attr is gen_of:
            chart = _winrate_bar_chart(present, rates)
        else:
            numeric = all(isinstance(s, int | float) for s in present)
            chart = _winrate_cfg_chart(present, rates) if numeric else _winrate_bar_chart(present, rates)
        block: dict[str, Any] = {
            "title": title,
            "missing": False,
            "src": put(fname, chart),
            "header": [
                "model" if attr is gen_of else "guidance scale",
                "W",
                "T",
                "L",
                "N",
                "win rate",
                "95% CI",
            ],
            "rows": [
                [
                    _scale(g),
                    rates[g]["wins"],
                    rates[g]["ties"],
                    rates[g]["losses"],
                    rates[g]["n"],
                    _fmt(rates[g]["win_rate"]),
                    format_ci(rates[g]["ci"]),
                ]
                for g in present
            ],
            "id": tid,
            "h2h": None,
        }
        if attr is gen_of and len(present) > 2:
            h2h = head_to_head(overall, attr)
            block["h2h"] = {
                "header": ["", *present],
                "rows": [
                    [
                        a,
                        *[
                            "–"
                            if (a, b) not in h2h
                            else f"{h2h[(a, b)]['win_rate']:.3f} {format_ci(h2h[(a, b)]['ci'])} "
                            f"(N={h2h[(a, b)]['n']})"
                            for b in present
                        ],
                    ]
                    for a in present
                ],
            }
        blocks.append(block)
    return {
        "pairs": len(overall),
        "mode": mode,
        "tolerance": f"{config.pairs.tie_tolerance:g}",
        "blocks": blocks,
    }


def _failures_context(status: dict[str, Any], put: Any) -> dict[str, Any]:
    st = status.get("stages", {})
    chart_rows = []
    table_rows = []
    reason_rows = []
    for stage in ("prompts", "generate", "annotate", "pairs"):
        s = st.get(stage)
        if not s:
            continue
        pending = s.get("pending")
        table_rows.append(
            [
                stage,
                s.get("state", ""),
                s.get("done", 0),
                s.get("failed", 0),
                s.get("failed_transient", 0),
                s.get("failed_permanent", 0),
                "–" if pending is None else pending,
                s.get("filtered", "–") if stage == "prompts" else "–",
            ]
        )
        if stage != "pairs" and s.get("state") != "off":
            label = {"generate": "generate (images)", "annotate": "annotate (annotations)"}
            chart_rows.append(
                (
                    label.get(stage, stage),
                    s.get("done", 0),
                    s.get("failed", 0),
                    pending or 0,
                    s.get("filtered", 0) or 0,
                )
            )
        for reason, n in (s.get("reasons") or {}).items():
            reason_rows.append([stage, n, reason])
    chart = put("failures.png", _failures_chart(chart_rows)) if chart_rows else None
    return {"chart": chart, "stages": table_rows, "reasons": reason_rows}


def _calibration_context(status: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration gate's record (``annotate.judge.calibration`` or ``annotate.metrics.calibration``),
    formatted; None without one."""
    cal = (status.get("stages", {}).get("annotate") or {}).get("calibration")
    if not cal:
        return None
    ci = cal.get("wilson_ci") or cal.get("bootstrap_ci")
    return {
        "n_pairs": cal["n_pairs"],
        "testset": cal["testset"],
        "protocol": cal["protocol"],
        "guide_version": cal.get("guide_version"),
        "metrics": "scorer" in cal,  # metric feedback's gate: a scorer and weights, not a judge
        "accuracy": "n/a" if cal.get("accuracy") is None else f"{cal['accuracy']:.1%}",
        "ci": f"{ci[0]:.1%}–{ci[1]:.1%}" if ci else "–",
        "min_accuracy": f"{cal['min_accuracy']:.1%}",
        "passed": bool(cal.get("passed")),
    }


def _spend_context(status: dict[str, Any]) -> dict[str, Any] | None:
    llm = status.get("llm") or {}
    if not llm:
        return None
    rows = []
    total = dict.fromkeys(("attempts", "completions", "errors", "input_tokens", "output_tokens"), 0)
    usd = 0.0
    for purpose in sorted(llm):
        v = llm[purpose]
        rows.append(
            [
                purpose,
                v.get("attempts", 0),
                v.get("completions", 0),
                v.get("errors", 0),
                v.get("input_tokens", 0),
                v.get("output_tokens", 0),
                f"{v.get('usd', 0.0):.4f}",
            ]
        )
        for k in total:
            total[k] += v.get(k, 0) or 0
        usd += v.get("usd", 0.0) or 0.0
    return {"rows": rows, "total": ["total", *total.values(), f"{usd:.4f}"]}


def _header(
    config: BuildConfig,
    run: RunDir,
    status: dict[str, Any],
    data: dict[str, Any],
    summary: FeedbackSummary,
    names: list[str],
    scales: list[Any],
    tiny: bool,
    version: str,
) -> dict[str, Any]:
    ann = config.annotate
    feedback: dict[str, Any] = {"kind": ann.backend}
    if ann.backend == "judge":
        feedback.update(judge=judge_name(ann.judge), lo=ann.judge.score_min, hi=ann.judge.score_max)
    return {
        "title": config.publish.pretty_name or Path(config.run_dir).name,
        "run": str(run.root),
        "fingerprint": status.get("fingerprint") or run.meta().get("fingerprint", "?"),
        "version": version,
        "names": names,
        "scales": [_scale(s) for s in scales],
        "feedback": feedback,
        "tiny": tiny,
        "counts": [
            ["prompts", len(data["prompts"])],
            ["images", len(data["images"])],
            ["annotated images", len(summary)],
            ["pairs (all aspects)", len(data["pairs"])],
            ["overall pairs", sum(1 for p in data["pairs"] if p["aspect"] == "overall")],
        ],
    }


def _samples_context(
    run: RunDir,
    prompts: Iterable[dict[str, Any]],
    images: Iterable[dict[str, Any]],
    summary: FeedbackSummary,
    ann: Any,
    put: Any,
) -> dict[str, Any]:
    from PIL import Image

    # Images come grouped by prompt in prompt order (collect's row order), so the first SAMPLE_PROMPTS
    # prompts with images are those of the first SAMPLE_PROMPTS prompt ids met: reading stops there.
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in images:
        if rec["prompt_id"] not in by_prompt and len(by_prompt) == SAMPLE_PROMPTS:
            break
        by_prompt[rec["prompt_id"]].append(rec)
    chosen = list(islice((p for p in prompts if by_prompt.get(p["prompt_id"])), SAMPLE_PROMPTS))

    def sort_key(r: dict[str, Any]) -> tuple:
        gs = r.get("guidance_scale")
        return (
            str(r.get("generator_name")),
            gs if isinstance(gs, int | float) else 0,
            r.get("sample_index") or 0,
            r["image_id"],
        )

    out = []
    for p in chosen:
        figures = []
        for rec in sorted(by_prompt[p["prompt_id"]], key=sort_key)[:SAMPLE_IMAGES_PER_PROMPT]:
            name = f"{SAMPLES_DIR}/{rec['image_id']}.png"
            fig: dict[str, Any] = {
                "generator": rec["generator_name"],
                "cfg": _scale(rec["guidance_scale"]),
                "src": None,
                "alt": f"{rec['generator_name']}, CFG {_scale(rec['guidance_scale'])}",
                "error": None,
                "lines": [],
                "tooltip": "",
                "rank1": False,
                "no_feedback": False,
            }
            try:
                with Image.open(run.root / rec["file"]) as im:
                    im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
                    im.thumbnail((THUMB_SIDE, THUMB_SIDE))
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
                fig["src"] = put(name, buf.getvalue())
            except (OSError, ValueError) as exc:
                fig["error"] = str(exc)
            fb = summary.samples.get(rec["image_id"])
            if fb:
                lines = [f"overall {_fmt(fb.get('overall'), 2)} · rank {fb.get('rank')}"]
                aspects = [f"{ASPECT_ABBREV[a]} {_fmt(fb[a]['score'], 1)}" for a in ASPECTS if fb.get(a)]
                if aspects:
                    lines.append(" · ".join(aspects))
                metrics = fb.get("metrics") or {}
                ms = [f"{m} {_fmt(metrics[m], 2)}" for m in METRIC_NAMES if metrics.get(m) is not None]
                if ms:
                    lines.append(" · ".join(ms))
                fig["lines"] = lines
                fig["tooltip"] = "\n".join(
                    f"{a}: {fb[a].get('explanation') or ''}" for a in ASPECTS if fb.get(a)
                )
                fig["rank1"] = fb.get("rank") == 1
            else:
                fig["no_feedback"] = True
            figures.append(fig)
        out.append({"text": p["prompt"], "figures": figures})
    return {
        "prompts": out,
        "per_prompt": SAMPLE_IMAGES_PER_PROMPT,
        "feedback": bool(summary),
        "judge": ann.backend == "judge",
    }


def _remove_stale(out: Path, written: set[Path]) -> None:
    """PNGs of an earlier report that this one no longer references (e.g. fewer samples) are removed."""
    for path in [*out.glob("*.png"), *(out / SAMPLES_DIR).glob("*.png")]:
        if path not in written:
            path.unlink(missing_ok=True)
