"""Judge annotation through the OpenAI Batch API: submit what is not answered yet, collect what is done.

The runner (``visionprefer.llm.batch``) commits every collected answer to the same response cache the online
path uses, so the annotate stage then validates answers by replaying the cache and never sends a request
itself in batch mode. Each rank keeps its own state file (``annotate/batches-rank<R>.json``), so a restarted
process resumes polling its batches instead of submitting them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import BuildConfig
from ..dist import ProcessInfo
from ..llm.batch import BatchFailure, BatchRunner
from ..llm.cache import ResponseCache
from ..llm.usage import UsageLog, price_for
from ..rundir import RunDir


def submit_judge_batch(
    config: BuildConfig,
    run: RunDir,
    groups: list[Any],
    build_request: Callable[[Any], dict[str, Any]],
    *,
    proc: ProcessInfo,
) -> dict[str, BatchFailure | None]:
    """Run the Batch API for ``groups``; returns request key -> None (answer cached) or the failure."""
    judge = config.annotate.judge
    cache = ResponseCache(run.llm_dir, proc.rank)
    usage = UsageLog(run.llm_dir, proc.rank)
    try:
        with BatchRunner(
            None,
            judge.llm,
            judge.batch,
            state_path=run.root / "annotate" / f"batches-rank{proc.rank}.json",
            cache=cache,
            usage=usage,
            purpose="judge",
            price=price_for(judge.llm.model, config.prices),
        ) as runner:
            return runner.run(build_request(g) for g in groups)
    finally:
        cache.close()
        usage.close()
