"""``visionprefer eval hpsv2``: the HPS v2 benchmark (Wu et al., 2023) with the v2.0 or v2.1 checkpoint.

Prompts: 800 per style (anime, concept-art, paintings, photo) from the Hub dataset ``zhwang/HPDv2``
(``benchmark/<style>.json``, downloaded and cached by huggingface_hub), or a local folder holding those
files. Images: ``<root>/<style>/<index:05d>.jpg`` — generated with ``--model`` or read with ``--images``.
Statistics as the official tool prints them: per style the mean and the population standard deviation
(``np.std``) of the means of consecutive 80-image chunks, then the average over all images; scores are
100 x cosine. The version is always reported (v2.0 and v2.1 numbers are not comparable), and so is the
resize antialiasing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SourceError, first_line
from ..rundir import atomic_write_text, write_jsonl

STYLES = ("anime", "concept-art", "paintings", "photo")
HPD_REPO = "zhwang/HPDv2"
CHUNK = 80


def load_benchmark_prompts(style: str, benchmark_dir: str | Path | None = None) -> list[str]:
    """The style's prompt list: ``<benchmark_dir>/<style>.json`` or the Hub dataset's ``benchmark/<style>.json``."""
    if benchmark_dir is not None:
        path = Path(benchmark_dir) / f"{style}.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(HPD_REPO, f"benchmark/{style}.json", repo_type="dataset"))
        except Exception as e:  # network, auth, offline mode: all the user's to fix
            first = first_line(e)
            raise SourceError(
                f"HPS v2 prompts for {style!r}: cannot download from {HPD_REPO} ({first}); "
                "pass --benchmark-dir with the benchmark/*.json files"
            ) from None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{path}: HPS v2 prompt file not found") from None
    except ValueError as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
        raise SourceError(f"{path}: expected a JSON list of prompt strings")
    return data


def style_statistics(scores: list[float], chunk: int = CHUNK) -> dict[str, float]:
    """Mean and population std of the means of consecutive ``chunk``-image chunks (the official printout)."""
    arr = np.asarray(scores, dtype=np.float64)
    means = [arr[i : i + chunk].mean() for i in range(0, len(arr), chunk)]
    return {"mean": float(np.mean(means)), "std": float(np.std(means)), "n_images": len(arr)}


def incomplete_reason(summary: dict[str, Any]) -> str | None:
    """Why a run is not the whole benchmark, as the one line that refuses its leaderboard submission; None
    for a complete run (every style, every prompt of each). A summary without coverage fields (written
    before they existed) counts as complete."""
    styles = list(summary.get("styles") or {})
    missing = [s for s in STYLES if s not in styles]
    used = summary.get("prompts_per_style") or {}
    total = summary.get("benchmark_prompts_per_style") or {}
    cut = {s: (used[s], total[s]) for s in used if s in total and used[s] < total[s]}
    if cut:
        n, of = next(iter(cut.values()))
        return (
            f"--submission needs the whole HPS v2 benchmark, but --limit {summary.get('limit')} scores only the "
            f"first {n} of {of} prompts per style, which is not comparable on a leaderboard; drop --limit, or "
            "drop --submission to get the limited numbers"
        )
    if used and missing:
        return (
            f"--submission needs all four HPS v2 styles, but style(s) {missing} were not run; drop --styles, "
            "or drop --submission"
        )
    return None


def run_hpsv2(
    out_dir: str | Path,
    *,
    images: str | Path | None = None,
    model: str | None = None,
    version: str = "v2.1",
    styles: tuple[str, ...] = STYLES,
    benchmark_dir: str | Path | None = None,
    limit: int | None = None,
    checkpoint: str | None = None,
    antialias: bool = True,
    chunk: int = CHUNK,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float = 7.5,
    progress: bool = True,
    submission: bool = False,
) -> dict[str, Any]:
    """Score the benchmark's images; ``submission=True`` (``--submission``) refuses a limited run up front,
    before any image is generated or scored (see :func:`incomplete_reason`)."""
    from ..scorers.factory import ScorerSettings, build_scorer
    from .images import generate_images, read_image_dir
    from .provenance import summary_provenance
    from .score import score_images

    if (images is None) == (model is None):
        raise ConfigError(
            "eval hpsv2: give exactly one of --model (generate) or --images DIR (existing images)"
        )
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ConfigError(f"--styles: unknown style(s) {unknown}; the benchmark has {', '.join(STYLES)}")
    out = Path(out_dir)
    full = {s: load_benchmark_prompts(s, benchmark_dir) for s in styles}
    prompts = {s: full[s][:limit] for s in styles}
    coverage = {
        "limit": limit,
        "prompts_per_style": {s: len(prompts[s]) for s in styles},
        "benchmark_prompts_per_style": {s: len(full[s]) for s in styles},
    }
    coverage["complete"] = incomplete_reason({**coverage, "styles": dict.fromkeys(styles)}) is None
    if submission and not coverage["complete"]:
        raise ConfigError(incomplete_reason({**coverage, "styles": dict.fromkeys(styles)}))
    rels = {s: [f"{s}/{i:05d}.jpg" for i in range(len(prompts[s]))] for s in styles}
    model_meta = None
    if model is not None:
        items = [(r, p) for s in styles for r, p in zip(rels[s], prompts[s], strict=True)]
        model_meta = generate_images(
            model,
            items,
            out / "images",
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            device=device,
            progress=progress,
        )
        images = out / "images"
    root = Path(images)  # type: ignore[arg-type]
    missing_styles = [s for s in styles if not (root / s).is_dir()]
    if missing_styles:
        raise ConfigError(
            f"--images: {root} has no folder for style(s) {missing_styles} (layout <root>/<style>/<i:05d>.jpg)"
        )
    scorer = build_scorer(
        "hpsv2",
        ScorerSettings(
            device=device,
            batch_size=batch_size,
            hpsv2_version=version,
            hpsv2_checkpoint=checkpoint,
            hpsv2_antialias=antialias,
        ),
    )
    rows: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    skipped: dict[str, int] = {}
    all_scores: list[float] = []
    for s in styles:
        found = read_image_dir(root, rels[s])
        for reason, n in found.skip_counts().items():
            skipped[reason] = skipped.get(reason, 0) + n
        usable = [i for i, r in enumerate(rels[s]) if r in found.files]
        scores: list[float] = []
        # Fixed chunks of the prompt list (as generation's), not of the usable images: a skipped image
        # leaves a hole in its chunk instead of shifting every later batch, so scores do not depend on it.
        for start in range(0, len(rels[s]), batch_size):
            idx = [
                i for i in range(start, min(start + batch_size, len(rels[s]))) if rels[s][i] in found.files
            ]
            if not idx:
                continue
            got = score_images(
                {"hpsv2": scorer}, [prompts[s][i] for i in idx], [found.files[rels[s][i]] for i in idx]
            )
            scores += got["hpsv2"].tolist()  # already 100 x cosine
        for i, score in zip(usable, scores, strict=True):
            rows.append(
                {
                    "style": s,
                    "index": i,
                    "prompt": prompts[s][i],
                    "image": found.name(rels[s][i]),
                    "score": score,
                }
            )
        for r in rels[s]:
            if r in found.skipped:
                rows.append(
                    {
                        "style": s,
                        "index": int(Path(r).stem),
                        "image": found.name(r),
                        "skipped": found.skipped[r],
                    }
                )
        if scores:
            stats[s] = style_statistics(scores, chunk)
        all_scores += scores
    if not all_scores:
        raise ConfigError(f"--images: no readable image in {root} for the requested styles")
    summary = {
        "benchmark": "hpsv2",
        "version": version,
        "reward_model": "xswu/HPSv2",
        "checkpoint": Path(str(scorer.info["checkpoint"])).name,
        "antialias": antialias,
        "chunk": chunk,
        "styles": stats,
        "average": float(np.mean(all_scores)),
        "n_images": len(all_scores),
        "skipped": skipped,
        "scorer": scorer.info,
        "model": model_meta,
        "images": str(root),
        **coverage,
        "provenance": summary_provenance({"hpsv2": scorer}),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "hpsv2_items.jsonl", rows)
    atomic_write_text(out / "hpsv2_summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
