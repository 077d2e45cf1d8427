"""``visionprefer status RUN_DIR``: per-stage counts of done, pending and failed items, with reasons.

Counts are of item keys from the run's own config snapshot, so they match what a rerun would do.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .rundir import RunDir


def _top_reasons(reasons: list[str], n: int = 5) -> dict[str, int]:
    return dict(Counter(reasons).most_common(n))


def run_status(run_dir: str | Path) -> dict[str, Any]:
    run = RunDir.open(run_dir)
    config = run.load_config()
    meta = run.meta()
    out: dict[str, Any] = {
        "run_dir": str(run.root),
        "fingerprint": meta.get("fingerprint"),
        "version": meta.get("version"),
        "stages": {},
    }
    stages = out["stages"]

    from .llm.usage import UsageLog

    out["llm"] = UsageLog(run.llm_dir).totals()
    if not run.prompts_file.exists():
        stages["prompts"] = {"state": "not run", "done": 0, "pending": None, "failed": 0}
        stages["generate"] = {
            "state": "waiting for prompts",
            "planned": None,
            "done": 0,
            "pending": None,
            "failed": 0,
        }
        return out

    from .generate.stage import generation_state, plan_for_run
    from .prompts.stage import load_prompts, load_rejected

    prompts = load_prompts(run)
    rejected = load_rejected(run)
    failed_prompts = [r for r in rejected if r["kind"] == "failed"]
    stages["prompts"] = {
        "state": "done",
        "done": len(prompts),
        "polished": sum(1 for p in prompts if p.get("polish_model")),
        "flagged_unsafe": sum(1 for p in prompts if p.get("safety", "ok") != "ok"),
        "failed_transient": sum(1 for r in failed_prompts if r.get("failure") in ("transient", "budget")),
        "failed_permanent": sum(1 for r in failed_prompts if r.get("failure") not in ("transient", "budget")),
        "pending": 0,
        "filtered": sum(1 for r in rejected if r["kind"] == "filtered"),
        "failed": len(failed_prompts),
        "reasons": _top_reasons([r["reason"].split(" (")[0] for r in rejected]),
        "failure_details": [
            {k: r.get(k) for k in ("source", "source_index", "reason", "failure", "raw")}
            for r in failed_prompts[:20]
        ],
    }

    chunks = plan_for_run(config, run)
    planned = [i for c in chunks for i in c.image_ids]
    state = generation_state(run)
    planned_set = set(planned)
    done = sum(1 for i in planned_set if i in state.done)
    failed = {k: v for k, v in state.failed.items() if k in planned_set}
    permanent = sum(1 for v in failed.values() if v.get("kind") == "permanent")
    by_generator: dict[str, dict[str, int]] = {}
    for c in chunks:
        row = by_generator.setdefault(c.generator, {"planned": 0, "done": 0})
        row["planned"] += len(c.tasks)
        row["done"] += sum(1 for i in c.image_ids if i in state.done)
    stages["generate"] = {
        "state": "done" if done == len(planned_set) else ("started" if done or failed else "not run"),
        "planned": len(planned_set),
        "done": done,
        "pending": len(planned_set) - done - len(failed),
        "failed": len(failed),
        "failed_transient": len(failed) - permanent,
        "failed_permanent": permanent,
        "reasons": _top_reasons([v["reason"] for v in failed.values()]),
        "by_generator": by_generator,
        "stale_records": sum(1 for k in state.done if k not in planned_set),
    }
    stages["annotate"] = _annotate_status(config, run)
    stages["pairs"] = _pairs_status(config, run)
    return out


def _annotate_status(config: Any, run: RunDir) -> dict[str, Any]:
    from .annotate.stage import KEY, STAGE, planned_annotations

    backend = config.annotate.backend
    if backend == "none":
        return {"state": "off", "backend": "none", "done": 0, "pending": 0, "failed": 0}
    keys, waiting = planned_annotations(config, run)
    state = run.stage_log(STAGE, KEY).state()
    planned = set(keys)
    done = sum(1 for k in planned if k in state.done)
    failed = {k: v for k, v in state.failed.items() if k in planned}
    permanent = sum(1 for v in failed.values() if v.get("kind") == "permanent")
    row = {
        "backend": backend,
        "state": "done"
        if planned and done == len(planned) and not waiting
        else ("started" if done else "not run"),
        "planned": len(planned),
        "done": done,
        "pending": len(planned) - done - len(failed),
        "failed": len(failed),
        "failed_transient": len(failed) - permanent,
        "failed_permanent": permanent,
        "waiting_prompts": waiting,
        "reasons": _top_reasons([v["reason"].split(" (")[0] for v in failed.values()]),
    }
    if backend == "judge":
        row["rank_inconsistent"] = sum(
            1 for k in planned if k in state.done and not state.done[k].get("rank_consistent", True)
        )
    return row


def _pairs_status(config: Any, run: RunDir) -> dict[str, Any]:
    from .pairs.stage import load_pairs, pairs_path

    if config.annotate.backend == "none":
        return {"state": "off", "done": 0, "pending": 0, "failed": 0, "pairs": 0}
    if not pairs_path(run).exists():
        return {"state": "not run", "done": 0, "pending": None, "failed": 0, "pairs": 0}
    pairs = load_pairs(run)
    ties = sum(1 for p in pairs if p["label_0"] == 0.5)
    return {
        "state": "done",
        "done": len(pairs),
        "pending": 0,
        "failed": 0,
        "pairs": len(pairs),
        "ties": ties,
        "tie_rate": round(ties / len(pairs), 4) if pairs else None,
        "dpo_pairs": len(pairs) - ties,
    }


def format_status(status: dict[str, Any]) -> str:
    lines = [f"run {status['run_dir']}  (config {status['fingerprint']}, visionprefer {status['version']})"]
    lines.append(f"{'stage':<10} {'done':>8} {'pending':>8} {'failed':>8}  state")
    for name, st in status["stages"].items():
        pending = "-" if st.get("pending") is None else st["pending"]
        lines.append(f"{name:<10} {st['done']:>8} {pending:>8} {st['failed']:>8}  {st['state']}")
        extra = []
        if st.get("polished"):
            extra.append(f"polished {st['polished']}")
        if st.get("flagged_unsafe"):
            extra.append(f"flagged unsafe {st['flagged_unsafe']}")
        if st.get("filtered"):
            extra.append(f"filtered {st['filtered']}")
        if st.get("failed_permanent"):
            extra.append(f"{st['failed_permanent']} permanent (rerun with --retry-failed)")
        if extra:
            lines.append(f"{'':<10} " + ", ".join(extra))
        for reason, n in (st.get("reasons") or {}).items():
            lines.append(f"{'':<10}   {n} × {reason}")
        for gen, row in (st.get("by_generator") or {}).items():
            lines.append(f"{'':<10}   {gen}: {row['done']}/{row['planned']}")
    for purpose, row in (status.get("llm") or {}).items():
        lines.append(
            f"llm {purpose}: {row['completions']} answers, {row['errors']} errors in {row['attempts']} "
            f"attempts; {row['input_tokens']} in / {row['output_tokens']} out tokens, ${row['usd']:.4f}"
        )
    return "\n".join(lines)
