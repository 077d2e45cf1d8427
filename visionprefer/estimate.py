"""``visionprefer estimate CONFIG``: what a build will cost before anything is spent.

It reads and cleans the prompt sources (no files written), plans the images, and turns the plan into
GPU-hours at the throughput stated in the config's ``estimate`` section. When the run directory already
holds finished images, the remaining work is reported too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .config import BuildConfig
from .llm.usage import format_usd, round_usd  # noqa: F401 - round_usd is part of this module's API


def estimate_build(config: BuildConfig) -> dict[str, Any]:
    from .generate.plan import plan_images
    from .prompts.stage import collect_prompts
    from .rundir import MARKER, RunDir

    prompts = collect_prompts(config)
    chunks = plan_images(prompts.kept, config.generate)
    done: Collection[str] = ()
    run = RunDir(config.run_dir)
    if (run.root / MARKER).exists():
        from .generate.stage import generation_index

        done = generation_index(run)  # image ids only (addresses, not records)
    generators: dict[str, dict[str, Any]] = {}
    for c in chunks:
        row = generators.setdefault(c.generator, {"images": 0, "remaining": 0, "calls": 0})
        row["images"] += len(c.tasks)
        row["remaining"] += sum(1 for i in c.image_ids if i not in done)
        row["calls"] += 1
    ec = config.estimate
    for name, row in generators.items():
        rate = ec.per_generator.get(name, ec.images_per_gpu_hour)
        row["images_per_gpu_hour"] = rate
        row["gpu_hours"] = round(row["images"] / rate, 3)
        row["gpu_hours_remaining"] = round(row["remaining"] / rate, 3)
    counts = prompts.counts()
    from .prompts.polish import estimate_polish

    polish = estimate_polish(prompts.kept, config, run.llm_dir)
    llm = {"polish": polish}
    if config.annotate.backend == "judge":
        from .annotate.judge import estimate_judge, observed_judge

        planned: dict[str, int] = {}
        for c in chunks:
            for t in c.tasks:
                planned[t.prompt_id] = planned.get(t.prompt_id, 0) + 1
        groups = done_keys = None
        if run.prompts_file.exists() and done:
            from .annotate.judge import load_guide
            from .annotate.stage import judge_groups

            # Prompts whose images are all made have their groups (and maybe annotations) already; the
            # others are estimated from the plan.
            groups, _ = judge_groups(config, run, load_guide(config.annotate.judge)[1])
            done_keys = run.stage_log("annotate", "annotation_id").done_index()
            formed = {g.prompt_id for g in groups}
            planned = {pid: n for pid, n in planned.items() if pid not in formed}
        llm["judge"] = estimate_judge(
            config, planned, done_keys, groups, observed_judge(run), _observed_seconds(run)
        )
    elif config.annotate.backend == "metrics":
        from .annotate.metrics import estimate_metrics_llm

        # Questions are written for the prompt as generated: the polished text once the prompts stage ran.
        texts = {p["prompt_id"]: p["prompt"] for p in prompts.kept}
        if run.prompts_file.exists():
            from .generate.stage import stored_prompts

            texts.update((p["prompt_id"], p["prompt"]) for p in stored_prompts(run))
        per_text: dict[str, int] = {}  # prompt text -> images still to annotate
        for c in chunks:
            for t in c.tasks:
                text = texts.get(t.prompt_id, t.prompt)
                per_text[text] = per_text.get(text, 0) + 1
        if run.prompts_file.exists() and done:
            from .annotate.metrics import metric_tasks

            annotated = run.stage_log("annotate", "annotation_id").done_index()
            for t in metric_tasks(config, run)[0]:
                if t.annotation_id in annotated and per_text.get(t.prompt):
                    per_text[t.prompt] -= 1
        llm.update(estimate_metrics_llm(config, per_text, run.llm_dir))
    return {
        "prompts": counts["kept"],
        "prompts_rejected": counts["filtered"] + counts["failed"],
        "images": sum(r["images"] for r in generators.values()),
        "images_remaining": sum(r["remaining"] for r in generators.values()),
        "pipeline_calls": len(chunks),
        "gpu_hours": round(sum(r["gpu_hours"] for r in generators.values()), 3),
        "gpu_hours_remaining": round(sum(r["gpu_hours_remaining"] for r in generators.values()), 3),
        "generators": generators,
        "llm": llm,
    }


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


def _observed_seconds(run: Any) -> float | None:
    """Seconds per judged group of the local judge in this run (its usage records' latency), or None before
    a few groups."""
    from .llm.usage import MIN_OBSERVED_CALLS
    from .rundir import read_jsonl

    if not run.llm_dir.exists():
        return None
    seconds = [
        rec["latency_s"]
        for path in sorted(run.llm_dir.glob("usage-rank*.jsonl"))
        for rec in read_jsonl(path)
        if rec.get("purpose") == "judge" and rec.get("engine") and rec.get("latency_s") is not None
    ]
    return sum(seconds) / len(seconds) if len(seconds) >= MIN_OBSERVED_CALLS else None
