"""Judge annotation through the OpenAI Batch API: submit what is not answered yet, collect what is done.

The runner (``visionprefer.llm.batch``) commits every collected answer to the same response cache the online
path uses, so the annotate stage then validates answers by replaying the cache and never sends a request
itself in batch mode. Each rank keeps its own state file (``annotate/batches-rank<R>.json``), so a restarted
process resumes polling its batches instead of submitting them again. An answer that fails validation is
re-asked (the validation error quoted, as online) in a further batch of the same run, up to the judge's
``invalid_retries``; a re-ask batch still running when ``max_wait_s`` ends is polled by the next run.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    requests: Iterable[dict[str, Any]],
    *,
    proc: ProcessInfo,
    cache: ResponseCache,
    usage: UsageLog,
) -> dict[str, BatchFailure | None]:
    """Run the Batch API for ``requests`` (judge chat bodies; may be a generator, read once), committing
    answers to ``cache`` and attempts to ``usage`` (the stage's own, so that its replay sees them at once).
    Returns request key -> None (answer cached) or the failure."""
    from .judge import call_tokens, load_guide, observed_judge, request_images

    judge = config.annotate.judge
    guide, _ = load_guide(judge)
    observed = observed_judge(run)

    def predict(request: dict[str, Any]) -> tuple[float, float]:  # what `estimate` predicts for the call
        return call_tokens(judge, guide, request_images(request), observed)

    with BatchRunner(
        None,
        judge.llm,
        judge.batch,
        state_path=run.root / "annotate" / f"batches-rank{proc.rank}.json",
        cache=cache,
        usage=usage,
        purpose="judge",
        price=price_for(judge.llm.model, config.prices),
        ranks=proc.world_size,
        predict=predict,
    ) as runner:
        return runner.run(requests)
