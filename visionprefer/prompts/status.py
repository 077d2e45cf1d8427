"""``status`` of the prompts stage: the prompts kept (polished, flagged unsafe), filtered and failed."""

from __future__ import annotations

from typing import Any

from ..config import BuildConfig
from ..errors import RETRIED, failures_by_kind, top_reasons
from ..rundir import RunDir, read_jsonl


def prompts_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    if not run.prompts_file.exists():
        return {"state": "not run", "done": 0, "pending": None, "failed": 0}
    from .stage import load_rejected

    n_prompts = polished = flagged = 0
    for prompt in read_jsonl(run.prompts_file):  # counted as read: a large run has many
        n_prompts += 1
        polished += bool(prompt.get("polish_model"))
        flagged += prompt.get("safety", "ok") != "ok"
    rejected = load_rejected(run)
    failed = [r for r in rejected if r["kind"] == "failed"]
    transient = sum(1 for r in failed if r.get("failure") in RETRIED)
    return {
        "state": "done",
        "done": n_prompts,
        "polished": polished,
        "flagged_unsafe": flagged,
        "failed_transient": transient,
        "failed_permanent": len(failed) - transient,
        "pending": 0,
        "filtered": sum(1 for r in rejected if r["kind"] == "filtered"),
        "failed": len(failed),
        "reasons": top_reasons(r["reason"].split(" (")[0] for r in rejected),
        "failures_by_kind": failures_by_kind(failed, retry_field="failure"),
        "failure_details": [
            {k: r.get(k) for k in ("source", "source_index", "reason", "failure", "raw")} for r in failed[:20]
        ],
    }
