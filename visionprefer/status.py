"""``visionprefer status RUN_DIR``: per-stage counts of done, pending and failed items, with reasons.

Counts are of item keys from the run's own config snapshot, so they match what a rerun would do.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .errors import failure_kind_of
from .rundir import RunDir, read_jsonl


def _top_reasons(reasons: list[str], n: int = 5) -> dict[str, int]:
    return dict(Counter(reasons).most_common(n))


def failures_by_kind(records: Any, retry_field: str = "kind") -> dict[str, dict[str, Any]]:
    """Every failure kind among ``records`` (failure records of one stage): its count, how many of them
    the next run retries (``transient``) and how many only ``--retry-failed`` does (``permanent``), and
    one example (the first reason and raw answer seen), most frequent kind first."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        kind = failure_kind_of(rec)
        row = out.get(kind)
        if row is None:
            raw = rec.get("raw")
            row = out[kind] = {
                "count": 0,
                "transient": 0,
                "permanent": 0,
                "example": rec.get("reason"),
                "example_raw": raw[:300] if isinstance(raw, str) else None,
            }
        row["count"] += 1
        row["transient" if rec.get(retry_field) in ("transient", "budget") else "permanent"] += 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


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

    from .generate.plan import tasks_by_prompt
    from .generate.stage import generation_failures, generation_index
    from .prompts.stage import load_rejected

    # One pass over the prompts, planning one prompt at a time against an index of the finished images:
    # neither the prompts, the plan nor the generation records are held (a large run has one of each per
    # image). Prompt ids are unique in prompts.jsonl, so the planned ids of different prompts differ.
    index = generation_index(run)
    failed_any = generation_failures(run, index)
    n_prompts = polished = flagged = 0
    planned = done = 0
    failed_planned: set[str] = set()
    by_generator: dict[str, dict[str, int]] = {}
    plan = tasks_by_prompt(read_jsonl(run.prompts_file), config.generate)
    for j in index.join(((prompt, tasks), [t.image_id for t in tasks]) for prompt, tasks in plan):
        prompt, tasks = j.item
        n_prompts += 1
        polished += bool(prompt.get("polish_model"))
        flagged += prompt.get("safety", "ok") != "ok"
        finished = set(j.done)
        for t in tasks:  # per generator, every task counts (as in the chunks)
            row = by_generator.setdefault(t.generator, {"planned": 0, "done": 0})
            row["planned"] += 1
            row["done"] += t.image_id in finished
        planned += len(j.planned)  # overall, an image planned twice counts once
        done += len(j.done)
        failed_planned.update(i for i in j.planned if i in failed_any)

    rejected = load_rejected(run)
    failed_prompts = [r for r in rejected if r["kind"] == "failed"]
    stages["prompts"] = {
        "state": "done",
        "done": n_prompts,
        "polished": polished,
        "flagged_unsafe": flagged,
        "failed_transient": sum(1 for r in failed_prompts if r.get("failure") in ("transient", "budget")),
        "failed_permanent": sum(1 for r in failed_prompts if r.get("failure") not in ("transient", "budget")),
        "pending": 0,
        "filtered": sum(1 for r in rejected if r["kind"] == "filtered"),
        "failed": len(failed_prompts),
        "reasons": _top_reasons([r["reason"].split(" (")[0] for r in rejected]),
        "failures_by_kind": failures_by_kind(failed_prompts, retry_field="failure"),
        "failure_details": [
            {k: r.get(k) for k in ("source", "source_index", "reason", "failure", "raw")}
            for r in failed_prompts[:20]
        ],
    }

    failed = {k: v for k, v in failed_any.items() if k in failed_planned}  # in log order, for the reasons
    permanent = sum(1 for v in failed.values() if v.get("kind") == "permanent")
    stages["generate"] = {
        "state": "done" if done == planned else ("started" if done or failed else "not run"),
        "planned": planned,
        "done": done,
        "pending": planned - done - len(failed),
        "failed": len(failed),
        "failed_transient": len(failed) - permanent,
        "failed_permanent": permanent,
        "reasons": _top_reasons([v["reason"] for v in failed.values()]),
        "failures_by_kind": failures_by_kind(failed.values()),
        "by_generator": by_generator,
        "stale_records": len(index) - done,  # finished images the plan no longer has
    }
    del index
    stages["annotate"] = _annotate_status(config, run)
    stages["pairs"] = _pairs_status(config, run)
    from .publish.state import publish_status

    stages["publish"] = publish_status(config, run)
    return out


def _annotate_status(config: Any, run: RunDir) -> dict[str, Any]:
    from .annotate.stage import KEY, STAGE, planned_annotations

    backend = config.annotate.backend
    if backend == "none":
        return {"state": "off", "backend": "none", "done": 0, "pending": 0, "failed": 0}
    log = run.stage_log(STAGE, KEY)
    index = log.done_index()  # a judge record holds every image's scores and explanations: not loaded
    failures = log.failures(index.has_record)
    waiting = 0
    if backend == "judge":  # the groups are formed one prompt at a time and joined with the done index
        from .annotate.judge import load_guide
        from .annotate.stage import prompt_groups

        version = load_guide(config.annotate.judge)[1]

        def planned_keys() -> Any:
            nonlocal waiting
            for _, records, groups in prompt_groups(config, run, version):
                waiting += records is None
                for g in groups:  # annotation keys are distinct: they digest the images shown
                    yield g, [g.annotation_id]

        keys: Any = planned_keys()
    else:
        metric_keys, waiting = planned_annotations(config, run)
        keys = ((k, [k]) for k in dict.fromkeys(metric_keys))
    planned = done = inconsistent = 0
    failed_planned: set[str] = set()
    for j in index.join(keys):
        planned += 1
        if j.done:
            done += 1
            if backend == "judge":
                inconsistent += not j.records[0].get("rank_consistent", True)
        elif j.planned[0] in failures:
            failed_planned.add(j.planned[0])
    failed = {k: v for k, v in failures.items() if k in failed_planned}  # in log order, for the reasons
    permanent = sum(1 for v in failed.values() if v.get("kind") == "permanent")
    row = {
        "backend": backend,
        "state": "done"
        if planned and done == planned and not waiting
        else ("started" if done or failed else "not run"),
        "planned": planned,
        "done": done,
        "pending": planned - done - len(failed),
        "failed": len(failed),
        "failed_transient": len(failed) - permanent,
        "failed_permanent": permanent,
        "waiting_prompts": waiting,
        "reasons": _top_reasons([v["reason"].split(" (")[0] for v in failed.values()]),
        "failures_by_kind": failures_by_kind(failed.values()),
    }
    from .annotate.calibration import load_calibration

    calibration = load_calibration(run)  # the gate of either backend
    if calibration is not None:
        row["calibration"] = calibration
    if backend == "judge":
        batches = _batch_status(run)
        if batches is not None:
            row["batches"] = batches
            if batches["in_flight"] and row["state"] != "done":
                row["state"] = "in batch"  # submitted to the Batch API: the same command collects them
        from .annotate.stage import order_effects

        if config.annotate.judge.both_orders:  # a second pass over the groups, streamed as well
            groups = (g for _, _, gs in prompt_groups(config, run, version) for g in gs)
            effects = order_effects(config, run, groups=groups, done=index)
            if effects is not None:
                row["order_effects"] = effects
        row["rank_inconsistent"] = inconsistent
    return row


def _batch_status(run: RunDir) -> dict[str, Any] | None:
    """The judge's Batch API submissions from every rank's state file: batches still in flight (by their
    last polled status) with their requests, and batches collected; None when batch mode was never used."""
    import json

    paths = sorted((run.root / "annotate").glob("batches-rank*.json"))
    if not paths:
        return None
    in_flight: Counter[str] = Counter()
    requests = collected = 0
    for path in paths:
        try:
            entries = json.loads(path.read_text(encoding="utf-8")).get("batches", [])
        except (OSError, ValueError):
            continue  # the runner reports a damaged state file itself
        for entry in entries:
            if entry.get("collected"):
                collected += 1
            else:
                in_flight[entry.get("status") or "submitted"] += 1
                requests += len(entry.get("custom_ids") or ())
    return {
        "in_flight": sum(in_flight.values()),
        "in_flight_by_status": dict(in_flight),
        "requests_in_flight": requests,
        "collected": collected,
    }


def _pairs_status(config: Any, run: RunDir) -> dict[str, Any]:
    from .pairs.stage import is_dpo_pair, pairs_path

    if config.annotate.backend == "none":
        return {"state": "off", "done": 0, "pending": 0, "failed": 0, "pairs": 0}
    if not pairs_path(run).exists():
        return {"state": "not run", "done": 0, "pending": None, "failed": 0, "pairs": 0}
    n = ties = dpo = 0
    for p in read_jsonl(pairs_path(run)):  # counted as they are read: a run has several pairs per image
        n += 1
        ties += p["label_0"] == 0.5
        dpo += is_dpo_pair(p, config.publish.dpo_aspect)
    return {
        "state": "done",
        "done": n,
        "pending": 0,
        "failed": 0,
        "pairs": n,
        "ties": ties,
        "tie_rate": round(ties / n, 4) if n else None,
        "dpo_pairs": dpo,  # what the dpo config holds (one aspect, no ties)
    }


def format_status(status: dict[str, Any]) -> str:
    lines = [
        f"run directory: {status['run_dir']}  (config {status['fingerprint']}, visionprefer {status['version']})"
    ]
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
        if name == "publish" and st["state"] in ("done", "stale", "interrupted"):
            extra.append(st["folder"])
        if name == "publish" and st["state"] in ("stale", "interrupted"):
            extra.append("run `visionprefer publish CONFIG` (or `build`) to bring it up to date")
        if extra:
            lines.append(f"{'':<10} " + ", ".join(extra))
        batches = st.get("batches")
        if batches:
            states = ", ".join(f"{k} {v}" for k, v in sorted(batches["in_flight_by_status"].items()))
            if batches["in_flight"]:
                lines.append(
                    f"{'':<10} Batch API: {batches['in_flight']} batches in flight ({states}; "
                    f"{batches['requests_in_flight']} requests), {batches['collected']} collected; "
                    "the same command polls them again"
                )
            else:
                lines.append(f"{'':<10} Batch API: {batches['collected']} batches collected, none in flight")
        cal = st.get("calibration")
        if cal:
            ci = cal.get("wilson_ci") or cal.get("bootstrap_ci")
            shown = "n/a" if cal.get("accuracy") is None else f"{cal['accuracy']:.3f}"
            verdict = "passed" if cal.get("passed") else "FAILED"
            who = "judge" if cal.get("judge") else "metric feedback"
            lines.append(
                f"{'':<10} {who} calibration: accuracy {shown}"
                + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
                + f" on {cal['n_pairs']} pairs of {cal['testset']} ({cal['protocol']}), "
                f"min_accuracy {cal['min_accuracy']:g}: {verdict}"
            )
        effects = st.get("order_effects")
        if effects and effects["groups"]:
            lines.append(
                f"{'':<10} both orders: {effects['groups']} groups, preference agreement "
                f"{effects['order_agreement']:.1%}, first-position gain {effects['first_position_gain']:+.3f}"
            )
        for kind, row in (st.get("failures_by_kind") or {}).items():
            retry = ", ".join(f"{row[k]} {k}" for k in ("transient", "permanent") if row[k])
            example = " ".join(str(row["example"] or "").split())
            example = example if len(example) <= 120 else example[:119] + "…"
            lines.append(f"{'':<10}   {row['count']} × {kind} ({retry}), e.g. {example}")
        for gen, row in (st.get("by_generator") or {}).items():
            lines.append(f"{'':<10}   {gen}: {row['done']}/{row['planned']}")
    for purpose, row in (status.get("llm") or {}).items():
        lines.append(
            f"llm {purpose}: {row['completions']} answers, {row['errors']} errors in {row['attempts']} "
            f"attempts; {row['input_tokens']} in / {row['output_tokens']} out tokens, ${row['usd']:.4f}"
        )
    return "\n".join(lines)
