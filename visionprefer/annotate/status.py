"""``status`` of the annotate stage: annotations planned, done and failed (by failure kind), judge groups
waiting for their images, Batch API submissions in flight, the calibration gate's record and, with both
orders, the judge's order effects. The planned keys are formed one prompt at a time and joined with the done
index: no judge record (every image's scores and explanations) is loaded."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..config import BuildConfig
from ..errors import progress_counts
from ..rundir import RunDir


def annotate_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .stage import KEY, STAGE, planned_annotations

    backend = config.annotate.backend
    if backend == "none":
        return {"state": "off", "backend": "none", "done": 0, "pending": 0, "failed": 0}
    if not run.prompts_file.exists():
        return {"state": "waiting for prompts", "backend": backend, "done": 0, "pending": None, "failed": 0}
    log = run.stage_log(STAGE, KEY)
    index = log.done_index()  # a judge record holds every image's scores and explanations: not loaded
    failures = log.failures(index.has_record)
    waiting = 0
    if backend == "judge":  # the groups are formed one prompt at a time and joined with the done index
        from .judge import load_guide
        from .stage import prompt_groups

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
    row = {
        "backend": backend,
        "state": "done"
        if planned and done == planned and not waiting
        else ("started" if done or failed else "not run"),
        **progress_counts(planned, done, failed, short=True),
        "waiting_prompts": waiting,
    }
    from .calibration import load_calibration

    calibration = load_calibration(run)  # the gate of either backend
    if calibration is not None:
        row["calibration"] = calibration
    if backend == "judge":
        batches = batch_status(run)
        if batches is not None:
            row["batches"] = batches
            if batches["in_flight"] and row["state"] != "done":
                row["state"] = "in batch"  # submitted to the Batch API: the same command collects them
        from .stage import order_effects

        if config.annotate.judge.both_orders:  # a second pass over the groups, streamed as well
            groups = (g for _, _, gs in prompt_groups(config, run, version) for g in gs)
            effects = order_effects(config, run, groups=groups, done=index)
            if effects is not None:
                row["order_effects"] = effects
        row["rank_inconsistent"] = inconsistent
    return row


def batch_status(run: RunDir) -> dict[str, Any] | None:
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
