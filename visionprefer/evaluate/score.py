"""``visionprefer eval score``: CLIP score, LAION aesthetic, PickScore (and, when available, HPS v2 and CQ)
for a model's images of a prompt list.

Layout: prompt ``i`` of the prompt file has image ``<images>/<i:05d>.png`` (``.jpg`` accepted). With
``--model`` the images are generated into ``<out>/images/`` in that layout first (resumable). Writes
``<out>/score_items.jsonl`` (one row per image) and ``<out>/score_summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..rundir import atomic_write_text, write_jsonl

SCORE_METRICS = ("clip", "aesthetic", "pickscore", "hpsv2", "cq")


def read_prompt_list(path: str | Path, *, column: str | None = None, limit: int | None = None) -> list[str]:
    """Prompts of a file in any format the build reads (txt, jsonl, json, csv/tsv, parquet), cleaned."""
    from ..config import SourceConfig
    from ..prompts.benchmarks import PROMPT_SETS, benchmark_file
    from ..prompts.sources import RawPrompt, read_source
    from ..prompts.stage import clean_text

    if str(path) in PROMPT_SETS and not Path(path).exists():  # a public prompt set by name
        src = SourceConfig(benchmark=str(path), column=column, limit=limit)
        path = benchmark_file(str(path))
    else:
        src = SourceConfig(path=str(path), column=column, limit=limit)
    prompts = [clean_text(item.text) for item in read_source(src, Path(path)) if isinstance(item, RawPrompt)]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ConfigError(f"{path}: no prompts")
    return prompts


def check_metrics(metrics: Sequence[str]) -> None:
    unknown = sorted(set(metrics) - set(SCORE_METRICS))
    if unknown:
        raise ConfigError(f"--metrics: unknown metric(s) {unknown}; choose from {', '.join(SCORE_METRICS)}")


def score_settings(
    *,
    clip_model: str,
    aesthetic_model: str,
    aesthetic_clip_model: str | None,
    pickscore_model: str,
    pickscore_processor: str | None,
    hpsv2_version: str = "v2.1",
    hpsv2_checkpoint: str | None = None,
    cq_model: str = "hustvl/yolos-tiny",
    cq_threshold: float = 0.9,
    device: str = "auto",
    batch_size: int = 16,
) -> Any:
    """The :class:`~visionprefer.scorers.factory.ScorerSettings` of ``eval score``'s options."""
    from ..scorers.factory import ScorerSettings

    return ScorerSettings(
        device=device,
        batch_size=batch_size,
        clip_model=clip_model,
        aesthetic_model=aesthetic_model,
        aesthetic_clip_model=aesthetic_clip_model,
        pickscore_model=pickscore_model,
        pickscore_processor=pickscore_processor,
        hpsv2_version=hpsv2_version,
        hpsv2_checkpoint=hpsv2_checkpoint,
        cq_model=cq_model,
        cq_threshold=cq_threshold,
    )


def score_images(scorers: dict[str, Any], prompts: list[str], files: list[Path]) -> dict[str, np.ndarray]:
    from PIL import Image

    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(im.convert("RGB"))
    out = {name: np.asarray(s.score(prompts, images), dtype=np.float64) for name, s in scorers.items()}
    if "hpsv2" in out:  # HPS v2 is reported as 100 x cosine, as its benchmark does
        out["hpsv2"] = 100.0 * out["hpsv2"]
    return out


def run_score(
    prompts_file: str | Path,
    out_dir: str | Path,
    *,
    images: str | Path | None = None,
    model: str | None = None,
    metrics: Sequence[str] = ("clip", "aesthetic"),
    column: str | None = None,
    limit: int | None = None,
    clip_model: str = "openai/clip-vit-large-patch14",
    aesthetic_model: str = "laion-aesthetic-v2",
    aesthetic_clip_model: str | None = None,
    pickscore_model: str = "yuvalkirstain/PickScore_v1",
    pickscore_processor: str | None = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    hpsv2_version: str = "v2.1",
    hpsv2_checkpoint: str | None = None,
    cq_model: str = "hustvl/yolos-tiny",
    cq_threshold: float = 0.9,
    device: str = "auto",
    batch_size: int = 16,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float = 7.5,
    progress: bool = True,
) -> dict[str, Any]:
    from ..scorers import clip_score_mean
    from .images import generate_images, read_image_dir
    from .provenance import summary_provenance

    if (images is None) == (model is None):
        raise ConfigError(
            "eval score: give exactly one of --model (generate) or --images DIR (existing images)"
        )
    check_metrics(metrics)
    out = Path(out_dir)
    prompts = read_prompt_list(prompts_file, column=column, limit=limit)
    rels = [f"{i:05d}.png" for i in range(len(prompts))]
    model_meta = None
    if model is not None:
        model_meta = generate_images(
            model,
            list(zip(rels, prompts, strict=True)),
            out / "images",
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            device=device,
            progress=progress,
        )
        images = out / "images"
    found = read_image_dir(images, rels)  # type: ignore[arg-type]
    usable = [i for i, r in enumerate(rels) if r in found.files]
    if not usable:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(found.skip_counts().items()))
        raise ConfigError(
            f"eval score: none of the {len(rels)} images could be scored ({skipped or 'none found'}) in "
            f"{images}: it needs <index:05d>.png (or .jpg) per prompt"
        )
    from ..scorers.factory import build_scorers

    # In SCORE_METRICS order whatever the order of --metrics (the summary's keys follow it).
    scorers = build_scorers(
        [m for m in SCORE_METRICS if m in metrics],
        score_settings(
            clip_model=clip_model,
            aesthetic_model=aesthetic_model,
            aesthetic_clip_model=aesthetic_clip_model,
            pickscore_model=pickscore_model,
            pickscore_processor=pickscore_processor,
            hpsv2_version=hpsv2_version,
            hpsv2_checkpoint=hpsv2_checkpoint,
            cq_model=cq_model,
            cq_threshold=cq_threshold,
            device=device,
            batch_size=batch_size,
        ),
    )
    values: dict[str, list[float]] = {name: [] for name in scorers}
    # Fixed chunks of the prompt list (as generation's), not of the usable images: a skipped image leaves a
    # hole in its chunk instead of shifting every later batch, so the scores do not depend on it.
    for start in range(0, len(rels), batch_size):
        idx = [i for i in range(start, min(start + batch_size, len(rels))) if rels[i] in found.files]
        if not idx:
            continue
        got = score_images(scorers, [prompts[i] for i in idx], [found.files[rels[i]] for i in idx])
        for name, arr in got.items():
            values[name] += arr.tolist()
    items = [
        {
            "index": i,
            "prompt": prompts[i],
            "image": found.name(rels[i]),
            **{n: None if np.isnan(values[n][k]) else values[n][k] for n in scorers},
        }
        for k, i in enumerate(usable)
    ]
    items += [
        {"index": i, "prompt": prompts[i], "image": found.name(r), "skipped": found.skipped[r]}
        for i, r in enumerate(rels)
        if r in found.skipped
    ]
    items.sort(key=lambda r: r["index"])
    means = {}
    for name, vals in values.items():
        if not vals:
            means[name] = None
        elif name == "clip":
            means[name] = clip_score_mean(vals)  # torchmetrics' aggregate: max(mean, 0)
        elif np.all(np.isnan(vals)):
            means[name] = None
        else:  # CQ is NaN for a prompt that names no detectable object: left out of the mean
            means[name] = float(np.nanmean(vals))
    summary = {
        "benchmark": "score",
        "n_prompts": len(prompts),
        "n_scored": len(usable),
        "skipped": found.skip_counts(),
        "means": means,
        "models": {},
        "model": model_meta,
        "images": str(images),
        "provenance": summary_provenance(scorers),
    }
    for name, s in scorers.items():  # a model id where there is one, else the scorer's provenance entry
        summary["models"][name] = (
            getattr(s, "model_id", None)
            or getattr(s, "head_name", None)
            or summary["provenance"]["scorers"][name]
        )
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "score_items.jsonl", items)
    atomic_write_text(out / "score_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
