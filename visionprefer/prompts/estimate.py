"""``estimate`` of the prompts stage: the prompts cleaning keeps and what polishing them would cost."""

from __future__ import annotations

from typing import Any


def estimate_prompts(ctx: Any) -> dict[str, Any]:
    """``ctx`` is a :class:`visionprefer.estimate.EstimateContext`."""
    from .polish import estimate_polish

    counts = ctx.prompts.counts()
    return {
        "prompts": counts["kept"],
        "prompts_rejected": counts["filtered"] + counts["failed"],
        "llm": {"polish": estimate_polish(ctx.prompts.kept, ctx.config, ctx.run.llm_dir)},
    }
