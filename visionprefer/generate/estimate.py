"""``estimate`` of the generate stage: images, pipeline calls and GPU-hours per generator, at the
throughput the config's ``estimate`` section states, and what is still to make."""

from __future__ import annotations

from typing import Any


def estimate_generation(ctx: Any) -> dict[str, Any]:
    """``ctx`` is a :class:`visionprefer.estimate.EstimateContext`."""
    generators: dict[str, dict[str, Any]] = {}
    for c in ctx.chunks:
        row = generators.setdefault(c.generator, {"images": 0, "remaining": 0, "calls": 0})
        row["images"] += len(c.tasks)
        row["remaining"] += sum(1 for i in c.image_ids if i not in ctx.done)
        row["calls"] += 1
    ec = ctx.config.estimate
    for name, row in generators.items():
        rate = ec.per_generator.get(name, ec.images_per_gpu_hour)
        row["images_per_gpu_hour"] = rate
        row["gpu_hours"] = round(row["images"] / rate, 3)
        row["gpu_hours_remaining"] = round(row["remaining"] / rate, 3)
    return {
        "images": sum(r["images"] for r in generators.values()),
        "images_remaining": sum(r["remaining"] for r in generators.values()),
        "pipeline_calls": len(ctx.chunks),
        "gpu_hours": round(sum(r["gpu_hours"] for r in generators.values()), 3),
        "gpu_hours_remaining": round(sum(r["gpu_hours_remaining"] for r in generators.values()), 3),
        "generators": generators,
    }
