"""The stages, in order: one list that ``build`` and the CLI's summary loop over.

Each :class:`Stage` names the module that does the work and offers the same few plain functions:

* ``run(config, run, *, retry_failed, progress, proc)`` runs the stage for this process (``main_only``
  stages run on rank 0 while the other ranks wait at a barrier) and returns its report;
* ``summary(report)`` is what the CLI prints for that report (None: nothing to say);
* ``estimate(ctx)`` is the stage's part of ``visionprefer estimate`` (a dict merged into the estimate,
  its ``llm`` rows under one ``llm`` key; None: nothing to estimate), from the
  :class:`~visionprefer.estimate.EstimateContext` (the cleaned prompts and the image plan, made once);
* ``status(config, run)`` is the stage's row in ``visionprefer status``: at least ``state``, ``done``,
  ``pending`` (None: not known yet) and ``failed``, counted from the run directory alone.

The stage modules are imported only when a stage runs, so ``import visionprefer`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BuildConfig
from .dist import ProcessInfo
from .rundir import RunDir


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # where the stage's work lives
    run: Callable[..., Any]
    summary: Callable[[Any], str | None]
    status: Callable[[BuildConfig, RunDir], dict[str, Any]]
    estimate: Callable[[Any], dict[str, Any] | None] = lambda ctx: None
    main_only: bool = False  # a single writer: rank 0 runs it, the others wait


# --------------------------------------------------------------------------------------------- run
def _run_prompts(config: BuildConfig, run: RunDir, *, retry_failed: bool, progress: bool, proc: ProcessInfo):
    from .prompts.stage import run_prompts_stage

    return run_prompts_stage(config, run, retry_failed=retry_failed, progress=progress)


def _run_generate(
    config: BuildConfig, run: RunDir, *, retry_failed: bool, progress: bool, proc: ProcessInfo, **kwargs: Any
):
    from .generate.stage import generate_images

    return generate_images(config, run, retry_failed=retry_failed, progress=progress, proc=proc, **kwargs)


def _run_annotate(config: BuildConfig, run: RunDir, *, retry_failed: bool, progress: bool, proc: ProcessInfo):
    from .annotate.stage import run_annotate_stage

    return run_annotate_stage(config, run, retry_failed=retry_failed, progress=progress, proc=proc)


def _run_pairs(config: BuildConfig, run: RunDir, *, retry_failed: bool, progress: bool, proc: ProcessInfo):
    from .pairs.stage import run_pairs_stage

    return run_pairs_stage(config, run)


def _run_publish(config: BuildConfig, run: RunDir, *, retry_failed: bool, progress: bool, proc: ProcessInfo):
    from .publish.stage import publish_dataset

    return publish_dataset(config, run, progress=progress, status_of=lambda: run_status(run.root))


# --------------------------------------------------------------------------------------------- status
def _prompts_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .prompts.status import prompts_status

    return prompts_status(config, run)


def _generate_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .generate.status import generate_status

    return generate_status(config, run)


def _annotate_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .annotate.status import annotate_status

    return annotate_status(config, run)


def _pairs_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .pairs.status import pairs_status

    return pairs_status(config, run)


def _publish_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .publish.state import publish_status

    return publish_status(config, run)


# --------------------------------------------------------------------------------------------- estimate
def _prompts_estimate(ctx: Any) -> dict[str, Any]:
    from .prompts.estimate import estimate_prompts

    return estimate_prompts(ctx)


def _generate_estimate(ctx: Any) -> dict[str, Any]:
    from .generate.estimate import estimate_generation

    return estimate_generation(ctx)


def _annotate_estimate(ctx: Any) -> dict[str, Any] | None:
    from .annotate.estimate import estimate_annotation

    return estimate_annotation(ctx)


# --------------------------------------------------------------------------------------------- summaries
def _prompts_summary(r: Any) -> str:
    c = r.counts()
    return f"prompts: {c['kept']} kept, {c['filtered']} filtered, {c['failed']} failed"


def _generate_summary(r: Any) -> str:
    return (
        f"generate: {r.made} made, {r.done_before} already done, {r.failed} failed, "
        f"{r.blocked} skipped (permanent failures) of {r.planned} planned"
    )


def _annotate_summary(r: Any) -> str | None:
    if r.backend == "none":
        return None
    unit = "groups" if r.backend == "judge" else "images"
    return (
        f"annotate ({r.backend}): {r.made} {unit} annotated, {r.done_before} already done, "
        f"{r.failed} failed, {r.blocked} skipped (permanent failures)"
        + (f", {r.waiting} prompts waiting for images" if r.waiting else "")
    )


def _pairs_summary(r: Any) -> str | None:
    if not r.pairs:
        return None
    return f"pairs: {r.pairs} pairs ({r.ties} ties) over {', '.join(sorted(r.by_aspect))}"


def _publish_summary(r: Any) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in r.counts.items())
    return f"publish: {r.folder} ({counts}); load it with datasets.load_dataset({r.folder!r})\nreport: {r.report}"


STAGES: tuple[Stage, ...] = (
    Stage(
        "prompts",
        "visionprefer.prompts.stage",
        _run_prompts,
        _prompts_summary,
        _prompts_status,
        estimate=_prompts_estimate,
        main_only=True,
    ),
    Stage(
        "generate",
        "visionprefer.generate.stage",
        _run_generate,
        _generate_summary,
        _generate_status,
        estimate=_generate_estimate,
    ),
    Stage(
        "annotate",
        "visionprefer.annotate.stage",
        _run_annotate,
        _annotate_summary,
        _annotate_status,
        estimate=_annotate_estimate,
    ),
    Stage("pairs", "visionprefer.pairs.stage", _run_pairs, _pairs_summary, _pairs_status, main_only=True),
    Stage(
        "publish",
        "visionprefer.publish.stage",
        _run_publish,
        _publish_summary,
        _publish_status,
        main_only=True,
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """``visionprefer status RUN_DIR``: every stage's row (:attr:`Stage.status`) from the run's own config
    snapshot, and the LLM usage totals by purpose."""
    from .llm.usage import UsageLog

    run = RunDir.open(run_dir)
    config = run.load_config()
    meta = run.meta()
    return {
        "run_dir": str(run.root),
        "fingerprint": meta.get("fingerprint"),
        "version": meta.get("version"),
        "stages": {stage.name: stage.status(config, run) for stage in STAGES},
        "llm": UsageLog(run.llm_dir).totals(),
    }


def summary_lines(stages: dict[str, Any]) -> list[str]:
    """The CLI's lines for a build's stage reports (stages that did not run, or have nothing to say, give
    none)."""
    lines: list[str] = []
    for stage in STAGES:
        report = stages.get(stage.name)
        if report is None:
            continue
        text = stage.summary(report)
        if text:
            lines.extend(text.splitlines())
    return lines
