"""The build: a few stage calls in order, each reading and writing the run directory.

``build(config)`` runs every stage; ``run_stage(config, "generate")`` runs one. Re-running resumes: each
stage does only the items whose keys are missing. Under ``torchrun`` every rank calls the same function;
single-writer stages run on rank 0 while the others wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import BuildConfig
from .dist import ProcessInfo, process_info
from .rundir import RunDir
from .stages import STAGE_NAMES as STAGES  # the stage list lives in visionprefer.stages


@dataclass
class BuildReport:
    run_dir: str
    stages: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(getattr(r, "failed", 0) for r in self.stages.values())


def open_run(config: BuildConfig, proc: ProcessInfo | None = None) -> RunDir:
    """Create or reopen the config's run directory and snapshot the resolved config into it."""
    proc = proc or process_info()
    run = RunDir(config.run_dir)
    if proc.is_main:
        run.prepare(config.to_dict(), config.fingerprint())
    proc.barrier()
    return run


def run_stage(
    config: BuildConfig,
    stage: str,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    proc: ProcessInfo | None = None,
    run: RunDir | None = None,
    **kwargs: Any,
) -> Any:
    """Run one stage (and nothing downstream of it); see :mod:`visionprefer.stages`."""
    from .stages import get_stage

    spec = get_stage(stage)
    proc = proc or process_info()
    run = run or open_run(config, proc)
    if not spec.main_only:
        return spec.run(config, run, retry_failed=retry_failed, progress=progress, proc=proc, **kwargs)
    result = (
        spec.run(config, run, retry_failed=retry_failed, progress=progress, proc=proc, **kwargs)
        if proc.is_main
        else None
    )
    proc.barrier()
    return result


def build(
    config: BuildConfig, *, retry_failed: bool = False, progress: bool = True, proc: ProcessInfo | None = None
) -> BuildReport:
    """Run every stage of ``config`` into its run directory; re-running resumes."""
    proc = proc or process_info()
    run = open_run(config, proc)
    report = BuildReport(run_dir=str(run.root))
    for stage in STAGES:
        report.stages[stage] = run_stage(
            config, stage, retry_failed=retry_failed, progress=progress, proc=proc, run=run
        )
    return report
