"""``visionprefer eval winrate``: model A against model B (or N models) on shared prompts.

Judgments come from the pairwise VLM judge (``annotation_guides/pairwise.md``), asked in both orders — a
model wins a prompt only when both orders agree, anything else is a tie, so a position-biased judge yields
ties rather than wins — or from a reward scorer with a tie tolerance. Statistics: wins/ties/losses, win
rate (W + 0.5·T)/N, decisive win rate W/(W+L) with a Wilson interval, and a paired bootstrap over prompts;
for N models, Bradley–Terry ratings (GenAI-Arena's definition) with bootstrap CIs and online Elo.

Layout: every model folder holds ``<i:05d>.png`` (or ``.jpg``) for prompt ``i`` of the prompt file.
"""

from __future__ import annotations

import asyncio
import json
from itertools import combinations
from pathlib import Path
from typing import Any

from ..config import LLMConfig
from ..errors import BudgetExceeded, ConfigError
from ..llm import InvalidAnswer, extract_json
from ..resources import data_path
from ..rundir import atomic_write_text, write_jsonl

WINNERS = ("A", "B", "tie")
GUIDE = "annotation_guides/pairwise.md"
NAN_EXCLUDED = "score undefined (NaN)"


def pairwise_schema() -> dict[str, Any]:
    """The pairwise judge's response schema, in the portable subset of the pointwise judge's
    (``annotate.judge.judge_schema``): every property required, ``additionalProperties: false``, a string
    enum. Every instance of it is accepted by :func:`validate_pairwise`."""
    return {
        "type": "object",
        "properties": {
            "explanation": {"type": "string"},
            "winner": {"type": "string", "enum": list(WINNERS)},
        },
        "required": ["explanation", "winner"],
        "additionalProperties": False,
    }


_WINNERS = {"a": "A", "image a": "A", "b": "B", "image b": "B", "tie": "tie", "draw": "tie", "equal": "tie"}


def validate_pairwise(text: str) -> str:
    """``"A"``, ``"B"`` or ``"tie"`` from ``{"winner": ...}``; spellings such as "Image A", "b" or "Tie"
    (from servers without structured output) are accepted, anything else is an InvalidAnswer."""
    data = extract_json(text)
    if isinstance(data, dict):
        data = {str(k).strip().lower(): v for k, v in data.items()}
    winner = data.get("winner") if isinstance(data, dict) else None
    normalised = _WINNERS.get(" ".join(winner.split()).lower()) if isinstance(winner, str) else None
    if normalised is None:
        raise InvalidAnswer(f'"winner" must be "A", "B" or "tie", got {winner!r}')
    return normalised


def pairwise_messages(guide: str, prompt: str, url_first: str, url_second: str, detail: str) -> list[dict]:
    content = [
        {"type": "text", "text": json.dumps({"prompt": prompt}, ensure_ascii=False)},
        {"type": "text", "text": "Image A"},
        {"type": "image_url", "image_url": {"url": url_first, "detail": detail}},
        {"type": "text", "text": "Image B"},
        {"type": "image_url", "image_url": {"url": url_second, "detail": detail}},
    ]
    return [{"role": "system", "content": guide}, {"role": "user", "content": content}]


def pairwise_requests(
    llm_config: LLMConfig,
    prompt: str,
    file_a: Path,
    file_b: Path,
    *,
    image_max_side: int = 512,
    detail: str = "auto",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pairwise judge's two requests about one prompt's images: ``file_a`` shown first, then second."""
    from ..annotate.judge import image_data_url
    from ..llm import chat_request

    guide = data_path(GUIDE).read_text(encoding="utf-8")
    ua = image_data_url(str(file_a), image_max_side, "jpeg", 90)
    ub = image_data_url(str(file_b), image_max_side, "jpeg", 90)
    return tuple(  # type: ignore[return-value]
        chat_request(
            llm_config,
            pairwise_messages(guide, prompt, first, second, detail),
            schema=pairwise_schema(),
            schema_name="verdict",
        )
        for first, second in ((ua, ub), (ub, ua))
    )


def judge_pairs(
    prompts: list[str],
    files_a: list[Path],
    files_b: list[Path],
    llm_config: LLMConfig,
    run_dir: Path,
    *,
    image_max_side: int = 512,
    detail: str = "auto",
    prices: dict | None = None,
    purpose: str = "winrate",
    command: str = "eval winrate",
) -> list[dict]:
    """Ask the pairwise judge about every prompt in both orders; returns per-prompt records (``a_first``
    and ``b_first``: the answers "A", "B", "tie" or None, and the combined ``outcome``). The cache and
    usage log are ``<run_dir>/llm`` (usage under ``purpose``)."""
    from ..llm import LLMClient, run_bounded
    from . import stats

    results: dict[int, dict[str, Any]] = {}

    async def main() -> None:
        llm = LLMClient(llm_config, folder=run_dir / "llm", purpose=purpose, prices=prices or {})

        async def one(i: int) -> dict[str, Any]:
            requests = await asyncio.to_thread(
                pairwise_requests,
                llm_config,
                prompts[i],
                files_a[i],
                files_b[i],
                image_max_side=image_max_side,
                detail=detail,
            )
            answers = []
            for request in requests:
                result = await llm.call(request, validate=validate_pairwise)
                answers.append(result.value if result.ok else None)
                if not result.ok and result.kind == "budget":
                    raise BudgetExceeded(
                        f"{command}: max_cost_usd {llm_config.max_cost_usd:g} reached; raise it and rerun "
                        "(answers so far are cached)"
                    )
            first = stats.model_from_position(answers[0], a_shown_first=True)
            second = stats.model_from_position(answers[1], a_shown_first=False)
            outcome = int(stats.outcome_from_two_orders(first, second))
            return {"a_first": answers[0], "b_first": answers[1], "outcome": outcome}

        def done(i: int, record: dict[str, Any]) -> None:
            results[i] = record

        async with llm:
            await run_bounded(range(len(prompts)), one, done, workers=2 * llm_config.concurrency)

    asyncio.run(main())
    return [results[i] for i in range(len(prompts))]


def run_winrate(
    prompts_file: str | Path,
    models: dict[str, str | Path],
    out_dir: str | Path,
    *,
    judge: LLMConfig | None = None,
    scorer: str | None = None,
    scorer_model: str | None = None,
    tie_tolerance: float = 0.0,
    n_bootstrap: int = 1000,
    seed: int = 0,
    column: str | None = None,
    limit: int | None = None,
    image_max_side: int = 512,
    device: str = "auto",
) -> dict[str, Any]:
    """Compare the image folders of ``models`` (name -> folder) on the prompts of ``prompts_file``."""
    import math

    from . import stats
    from .images import read_image_dir
    from .provenance import judge_provenance, summary_provenance
    from .score import check_metrics, read_prompt_list, score_images

    if len(models) < 2:
        raise ConfigError(
            "eval winrate: give at least two models (--a DIR --b DIR, or --model-dir NAME=DIR twice)"
        )
    if (judge is None) == (scorer is None):
        raise ConfigError("eval winrate: choose one judgment source: --judge-model (VLM) or --scorer NAME")
    out = Path(out_dir)
    prompts = read_prompt_list(prompts_file, column=column, limit=limit)
    rels = [f"{i:05d}.png" for i in range(len(prompts))]
    sets = {name: read_image_dir(folder, rels) for name, folder in models.items()}
    shared = [i for i, r in enumerate(rels) if all(r in s.files for s in sets.values())]
    skipped = len(prompts) - len(shared)
    if not shared:
        raise ConfigError("eval winrate: no prompt has an image from every model")
    names = list(models)
    scores: dict[str, list[float]] = {}
    if scorer is not None:
        from ..scorers.factory import ScorerSettings, build_scorers

        check_metrics([scorer])
        settings = ScorerSettings(device=device)
        if scorer_model:  # the one model id names the chosen scorer's model (HPS: a local checkpoint)
            settings = settings.with_model(scorer_model)
        model = build_scorers([scorer], settings)
        for name in names:
            files = [sets[name].files[rels[i]] for i in shared]
            scores[name] = score_images(model, [prompts[i] for i in shared], files)[scorer].tolist()
    items: list[dict[str, Any]] = []
    battles: list[tuple[str, str, str]] = []
    pair_summaries = {}
    excluded: dict[str, int] = {}
    for a, b in combinations(names, 2):
        if scorer is not None:
            # A NaN score (CQ for a prompt that names no detectable object) decides nothing: that prompt is
            # left out of this pair's comparisons and counted.
            outcomes = [
                None
                if math.isnan(x) or math.isnan(y)
                else int(stats.outcome_from_scores(x, y, tie_tolerance))
                for x, y in zip(scores[a], scores[b], strict=True)
            ]
            records = [
                {
                    "score_a": None if math.isnan(sa) else sa,
                    "score_b": None if math.isnan(sb) else sb,
                    **({"excluded": NAN_EXCLUDED} if math.isnan(sa) or math.isnan(sb) else {}),
                }
                for sa, sb in zip(scores[a], scores[b], strict=True)
            ]
        else:
            records = judge_pairs(
                [prompts[i] for i in shared],
                [sets[a].files[rels[i]] for i in shared],
                [sets[b].files[rels[i]] for i in shared],
                judge,
                out,  # type: ignore[arg-type]
                image_max_side=image_max_side,
            )
            outcomes = [r["outcome"] for r in records]
        for i, o, r in zip(shared, outcomes, records, strict=True):
            items.append(
                {
                    "index": i,
                    "prompt": prompts[i],
                    "model_a": a,
                    "model_b": b,
                    "image_a": sets[a].name(rels[i]),
                    "image_b": sets[b].name(rels[i]),
                    "outcome": o,
                    **r,
                }
            )
            if o is not None:
                battles.append((a, b, "model_a" if o > 0 else "model_b" if o < 0 else "tie"))
        decided = [o for o in outcomes if o is not None]
        excluded[f"{a} vs {b}"] = len(outcomes) - len(decided)
        pair_summaries[f"{a} vs {b}"] = stats.win_rate_summary(decided, n_bootstrap=n_bootstrap, seed=seed)
    summary: dict[str, Any] = {
        "benchmark": "winrate",
        "models": {n: str(p) for n, p in models.items()},
        "judge": judge.model if judge else None,
        "scorer": scorer,
        "tie_tolerance": tie_tolerance if scorer else None,
        "n_prompts": len(prompts),
        "n_compared": len(shared),
        "skipped_prompts": skipped,
        "excluded_nan": excluded if scorer is not None else {},
        "pairs": pair_summaries,
        "provenance": summary_provenance(
            {scorer: model[scorer]} if scorer is not None else {},
            preferences="scorer" if scorer is not None else "judge",
            judge=judge_provenance(judge, GUIDE) if judge is not None else None,
        ),
    }
    if len(names) > 2 and battles:
        summary["bradley_terry"] = stats.bradley_terry(battles, n_bootstrap=n_bootstrap, seed=seed)
        summary["elo"] = stats.online_elo(battles)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "winrate_items.jsonl", items)
    atomic_write_text(out / "winrate_summary.json", json.dumps(summary, indent=2, default=_plain) + "\n")
    atomic_write_text(out / "winrate.md", render_markdown(summary))
    _chart(summary, out / "winrate.png")
    return summary


def _plain(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _get(summary: Any, key: str) -> Any:
    return summary[key] if isinstance(summary, dict) else getattr(summary, key)


def render_markdown(summary: dict[str, Any]) -> str:
    source = (
        f"judge `{summary['judge']}` (both orders)" if summary["judge"] else f"scorer `{summary['scorer']}`"
    )
    lines = [
        f"# Win rates ({source})",
        "",
        f"{summary['n_compared']} prompts compared ({summary['skipped_prompts']} skipped: an image missing).",
        *_excluded_lines(summary),
        "",
        "| pair | W | T | L | win rate | bootstrap 95% CI | decisive | Wilson 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["pairs"].items():
        d = _plain(s) if not isinstance(s, dict) else s
        dec = d.get("decisive_win_rate")
        wl, wh = d.get("wilson_ci") or (None, None)
        bl, bh = d.get("bootstrap_ci") or (None, None)
        lines.append(
            f"| {name} | {d['wins']} | {d['ties']} | {d['losses']} | {_rate(d['win_rate'])} | "
            f"{_ci(bl, bh)} | {'–' if dec is None else f'{dec:.3f}'} | {_ci(wl, wh)} |"
        )
    ratings = summary.get("bradley_terry") or {}
    if ratings:
        lines += [
            "",
            "## Bradley–Terry ratings",
            "",
            "GenAI-Arena's definition (Elo scale, 1000 for the reference), with percentile intervals over "
            "bootstrap refits of the battle log.",
            "",
            "| model | rating | 95% CI | battles |",
            "|---|---|---|---|",
        ]
        for name, r in ratings.items():
            d = r if isinstance(r, dict) else _plain(r)
            lines.append(
                f"| {name} | {d['rating']:.1f} | {_ci_1(d.get('ci_low'), d.get('ci_high'))} | {d['n_battles']} |"
            )
    return "\n".join(lines) + "\n"


def _excluded_lines(summary: dict[str, Any]) -> list[str]:
    """A note per pair that left prompts out because a score was NaN (CQ: no detectable object named)."""
    return [
        f"{name}: {n} prompt(s) left out, a score is undefined (NaN)"
        for name, n in (summary.get("excluded_nan") or {}).items()
        if n
    ]


def console_lines(summary: dict[str, Any]) -> list[str]:
    """What ``eval winrate`` prints: each pair's counts and win rate with its bootstrap interval, then the
    Bradley–Terry ratings with theirs (more than two models)."""
    lines = _excluded_lines(summary)
    for name, s in summary["pairs"].items():
        d = _plain(s) if not isinstance(s, dict) else s
        bl, bh = d.get("bootstrap_ci") or (None, None)
        rate = "–" if d["win_rate"] is None else f"{d['win_rate']:.3f}"
        lines.append(
            f"{name}: W {d['wins']} / T {d['ties']} / L {d['losses']}, win rate {rate} {_ci(bl, bh)}"
        )
    for name, r in (summary.get("bradley_terry") or {}).items():
        d = r if isinstance(r, dict) else _plain(r)
        lines.append(
            f"Bradley–Terry {name}: {d['rating']:.1f} {_ci_1(d.get('ci_low'), d.get('ci_high'))} "
            f"({d['n_battles']} battles)"
        )
    return lines


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _ci_1(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{lo:.1f}, {hi:.1f}]"


def _ci(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def _chart(summary: dict[str, Any], path: Path) -> None:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..rundir import atomic_write_bytes

    names = list(summary["pairs"])
    fig = Figure(figsize=(6, 0.6 * len(names) + 1.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, name in enumerate(names):
        d = summary["pairs"][name]
        d = d if isinstance(d, dict) else _plain(d)
        if d["win_rate"] is None:  # no decided prompt (every score NaN): no bar
            continue
        lo, hi = d.get("bootstrap_ci") or (d["win_rate"], d["win_rate"])
        ax.barh(y, d["win_rate"], color="#4c78a8")
        ax.plot([lo, hi], [y, y], color="black")
    ax.axvline(0.5, color="grey", linestyle="--")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate (W + 0.5 T) / N, 95% bootstrap CI")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
