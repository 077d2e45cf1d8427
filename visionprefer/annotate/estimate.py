"""``estimate`` of the annotate stage: the judge's calls (or a local judge's GPU-hours) or metric
feedback's LLM-written questions and VLM answers, less what the run has already annotated."""

from __future__ import annotations

from typing import Any


def estimate_annotation(ctx: Any) -> dict[str, Any] | None:
    """``ctx`` is a :class:`visionprefer.estimate.EstimateContext`; None when the stage is off."""
    backend = ctx.config.annotate.backend
    if backend == "judge":
        return {"llm": {"judge": _estimate_judge(ctx)}}
    if backend == "metrics":
        return {"llm": _estimate_metrics(ctx)}
    return None


def _estimate_judge(ctx: Any) -> dict[str, Any]:
    from .judge import estimate_judge, observed_judge

    config, run = ctx.config, ctx.run
    planned = ctx.images_per_prompt()
    groups = done_keys = None
    if run.prompts_file.exists() and ctx.done:
        from .judge import load_guide
        from .stage import judge_groups

        # Prompts whose images are all made have their groups (and maybe annotations) already; the others
        # are estimated from the plan.
        groups, _ = judge_groups(config, run, load_guide(config.annotate.judge)[1])
        done_keys = run.stage_log("annotate", "annotation_id").done_index()
        formed = {g.prompt_id for g in groups}
        planned = {pid: n for pid, n in planned.items() if pid not in formed}
    return estimate_judge(config, planned, done_keys, groups, observed_judge(run), _observed_seconds(run))


def _estimate_metrics(ctx: Any) -> dict[str, Any]:
    from .metrics import estimate_metrics_llm

    config, run = ctx.config, ctx.run
    # Questions are written for the prompt as generated: the polished text once the prompts stage ran.
    texts = {p["prompt_id"]: p["prompt"] for p in ctx.prompts.kept}
    if run.prompts_file.exists():
        from ..generate.stage import stored_prompts

        texts.update((p["prompt_id"], p["prompt"]) for p in stored_prompts(run))
    per_text: dict[str, int] = {}  # prompt text -> images still to annotate
    for c in ctx.chunks:
        for t in c.tasks:
            text = texts.get(t.prompt_id, t.prompt)
            per_text[text] = per_text.get(text, 0) + 1
    if run.prompts_file.exists() and ctx.done:
        from .metrics import metric_tasks

        annotated = run.stage_log("annotate", "annotation_id").done_index()
        for t in metric_tasks(config, run)[0]:
            if t.annotation_id in annotated and per_text.get(t.prompt):
                per_text[t.prompt] -= 1
    return estimate_metrics_llm(config, per_text, run.llm_dir)


def _observed_seconds(run: Any) -> float | None:
    """Seconds per judged group of the local judge in this run (its usage records' latency), or None before
    a few groups."""
    from ..llm.usage import MIN_OBSERVED_CALLS
    from ..rundir import read_jsonl

    if not run.llm_dir.exists():
        return None
    seconds = [
        rec["latency_s"]
        for path in sorted(run.llm_dir.glob("usage-rank*.jsonl"))
        for rec in read_jsonl(path)
        if rec.get("purpose") == "judge" and rec.get("engine") and rec.get("latency_s") is not None
    ]
    return sum(seconds) / len(seconds) if len(seconds) >= MIN_OBSERVED_CALLS else None
