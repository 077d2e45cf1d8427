"""``estimate`` of the annotate stage: the judge's calls (or a local judge's GPU-hours) or metric
feedback's LLM-written questions and VLM answers, less what the run has already annotated."""

from __future__ import annotations

from typing import Any


def estimate_annotation(ctx: Any) -> dict[str, Any] | None:
    """``ctx`` is a :class:`visionprefer.estimate.EstimateContext`; None when the stage is off."""
    backend = ctx.config.annotate.backend
    if backend == "judge":
        llm = {"judge": _estimate_judge(ctx)}
        if ctx.config.annotate.judge.calibration is not None:
            llm["calibration"] = _estimate_judge_calibration(ctx)
        return {"llm": llm}
    if backend == "metrics":
        llm = _estimate_metrics(ctx)
        if ctx.config.annotate.metrics.calibration is not None:
            llm.update(_estimate_metrics_calibration(ctx))
        return {"llm": llm}
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


def _estimate_judge_calibration(ctx: Any) -> dict[str, Any]:
    """The calibration gate's judge calls (``annotate.judge.calibration``): ``pairs`` two-image requests
    in one order, always online; none when the run holds the gate's record for this judge and sample."""
    from ..llm.usage import cost_usd, price_for, round_usd
    from .calibration import judge_calibration_key, recorded
    from .judge import call_tokens, load_guide

    judge = ctx.config.annotate.judge
    cal = judge.calibration
    guide, version = load_guide(judge)
    calls = 0 if recorded(ctx.run, judge_calibration_key(ctx.config, version)) else cal.pairs
    tokens_in, tokens_out = (calls * t for t in call_tokens(judge, guide, 2))
    price = price_for(judge.llm.model, ctx.config.prices) if judge.backend == "api" else None
    local = judge.backend == "local"
    return {
        "calls": calls,
        "cached": cal.pairs - calls,
        "images_per_call": 2,
        "input_tokens": round(tokens_in),
        "output_tokens": round(tokens_out),
        "usd": 0.0 if local else round_usd(cost_usd(price, tokens_in, tokens_out)),
        "price_known": local or price is not None,
        "mode": "local" if local else "online",
        "basis": "heuristic",
    }


def _estimate_metrics_calibration(ctx: Any) -> dict[str, Any]:
    """The metrics gate's LLM work (``annotate.metrics.calibration``), under the gate's usage purposes:
    questions for the test pairs' prompts and VLM answers for their two images each (the test set's local
    copy is read for its prompts); nothing once the run holds the gate's record for these metrics."""
    from .calibration import METRICS_PURPOSES, _usable_pairs, metrics_calibration_key, recorded
    from .metrics import estimate_metrics_llm, images_per_prompt

    config, run = ctx.config, ctx.run
    if recorded(run, metrics_calibration_key(config)):
        return {}
    items = _usable_pairs(config, config.annotate.metrics.calibration, "annotate.metrics.calibration")
    rows = estimate_metrics_llm(config, images_per_prompt(items), run.llm_dir)
    names = dict(zip(("questions", "vqa"), METRICS_PURPOSES, strict=True))
    return {names[role]: row for role, row in rows.items()}


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
