"""``visionprefer estimate CONFIG``: what a build will cost before anything is spent.

It reads and cleans the prompt sources (no files written) and plans the images once; then every stage adds
its part (``Stage.estimate`` in :mod:`visionprefer.stages`): the prompts kept and the cost of polishing
them, the images and GPU-hours at the throughput stated in the config's ``estimate`` section, the judge's
or metric feedback's LLM calls. When the run directory already holds finished work, the remaining work is
reported too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .config import BuildConfig
from .llm.usage import format_usd, round_usd  # noqa: F401 - round_usd is part of this module's API
from .rundir import RunDir


@dataclass
class EstimateContext:
    """What every stage's estimate reads: the cleaned prompts, the image plan and the finished images."""

    config: BuildConfig
    run: RunDir
    prompts: Any  # visionprefer.prompts.stage.CollectedPrompts
    chunks: list[Any]  # visionprefer.generate.plan chunks
    done: Collection[str]  # ids of the images already made (empty before the run directory exists)

    def images_per_prompt(self) -> dict[str, int]:
        """Planned images per prompt id."""
        planned: dict[str, int] = {}
        for c in self.chunks:
            for t in c.tasks:
                planned[t.prompt_id] = planned.get(t.prompt_id, 0) + 1
        return planned


def estimate_build(config: BuildConfig) -> dict[str, Any]:
    """The build's estimate: each stage's part, merged (their ``llm`` rows under one ``llm`` key)."""
    from .generate.plan import plan_images
    from .prompts.stage import collect_prompts
    from .rundir import MARKER
    from .stages import STAGES

    prompts = collect_prompts(config)
    run = RunDir(config.run_dir)
    done: Collection[str] = ()
    if (run.root / MARKER).exists():
        from .generate.stage import generation_index

        done = generation_index(run)  # image ids only (addresses, not records)
    ctx = EstimateContext(config, run, prompts, plan_images(prompts.kept, config.generate), done)
    out: dict[str, Any] = {}
    llm: dict[str, Any] = {}
    for stage in STAGES:
        part = dict(stage.estimate(ctx) or {})
        llm.update(part.pop("llm", {}))
        out.update(part)
    return {**out, "llm": llm}


def format_estimate(est: dict[str, Any]) -> str:
    lines = [
        f"prompts:  {est['prompts']} kept ({est['prompts_rejected']} rejected by cleaning)",
        f"images:   {est['images']} in {est['pipeline_calls']} pipeline calls ({est['images_remaining']} still to make)",
        f"GPU-hours: {est['gpu_hours']} ({est['gpu_hours_remaining']} remaining)",
    ]
    for name, row in est["generators"].items():
        lines.append(
            f"  {name}: {row['images']} images, {row['gpu_hours']} GPU-h at "
            f"{row['images_per_gpu_hour']:g} images/GPU-h"
        )
    for purpose, row in est["llm"].items():
        lines += format_llm_estimate(purpose, row)
    return "\n".join(lines)


def format_llm_estimate(purpose: str, row: dict[str, Any]) -> list[str]:
    """The lines of one LLM purpose's estimate (calls, cached answers, tokens, dollars; a local judge's
    GPU-hours): what ``estimate`` prints per purpose, and ``eval agreement --judge`` before it asks."""
    lines: list[str] = []
    if not row["calls"] and not row.get("cached") and not row.get("moderation_calls"):
        lines.append(f"{purpose}: off")
        return lines
    usd = format_usd(row["usd"]) if row.get("price_known", True) else "unknown $ (no price for the model)"
    lines.append(
        f"{purpose}: {row['calls']} calls ({row.get('cached', 0)} already answered), "
        f"~{row['input_tokens']} in / ~{row['output_tokens']} out tokens, {usd}"
        + (f"; {row['moderation_calls']} moderation calls" if row.get("moderation_calls") else "")
        + (" (tokens as observed in this run so far)" if row.get("basis") == "observed" else "")
    )
    if "gpu_hours" in row:
        lines.append(
            f"  local judge {row['model']}: {row['gpu_hours']} GPU-h at {row['groups_per_gpu_hour']:g} "
            f"groups/GPU-h ({'as observed in this run' if row['gpu_basis'] == 'observed' else 'assumed: set annotate.judge.local.groups_per_hour'})"
        )
    return lines
