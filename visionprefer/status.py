"""``visionprefer status RUN_DIR``: per-stage counts of done, pending and failed items, with reasons.

Counts are of item keys from the run's own config snapshot, so they match what a rerun would do. Each stage
reports its own row (``Stage.status`` in :mod:`visionprefer.stages`).
"""

from __future__ import annotations

from typing import Any

from .errors import failures_by_kind  # noqa: F401 - part of this module's API (it lives in errors)
from .stages import run_status  # noqa: F401 - the loop over the stages lives beside their list


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
        if st.get("folder") and st["state"] in ("done", "stale", "interrupted"):  # a stage writing a folder
            extra.append(st["folder"])
            if st["state"] != "done":
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
