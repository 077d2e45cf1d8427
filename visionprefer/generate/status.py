"""``status`` of the generate stage: images planned, made and failed, overall and per generator.

One pass over the prompts, planning one prompt at a time against an index of the finished images: neither
the prompts, the plan nor the generation records are held (a large run has one of each per image).
"""

from __future__ import annotations

from typing import Any

from ..config import BuildConfig
from ..errors import progress_counts
from ..rundir import RunDir, read_jsonl


def generate_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    if not run.prompts_file.exists():
        return {"state": "waiting for prompts", "planned": None, "done": 0, "pending": None, "failed": 0}
    from .plan import tasks_by_prompt
    from .stage import generation_failures, generation_index

    index = generation_index(run)
    failed_any = generation_failures(run, index)
    planned = done = 0
    failed_planned: set[str] = set()
    by_generator: dict[str, dict[str, int]] = {}
    plan = tasks_by_prompt(read_jsonl(run.prompts_file), config.generate)
    # Prompt ids are unique in prompts.jsonl, so the planned ids of different prompts differ.
    for j in index.join((tasks, [t.image_id for t in tasks]) for _, tasks in plan):
        finished = set(j.done)
        for t in j.item:  # per generator, every task counts (as in the chunks)
            row = by_generator.setdefault(t.generator, {"planned": 0, "done": 0})
            row["planned"] += 1
            row["done"] += t.image_id in finished
        planned += len(j.planned)  # overall, an image planned twice counts once
        done += len(j.done)
        failed_planned.update(i for i in j.planned if i in failed_any)
    failed = {k: v for k, v in failed_any.items() if k in failed_planned}  # in log order, for the reasons
    return {
        "state": "done" if done == planned else ("started" if done or failed else "not run"),
        **progress_counts(planned, done, failed),
        "by_generator": by_generator,
        "stale_records": len(index) - done,  # finished images the plan no longer has
    }
