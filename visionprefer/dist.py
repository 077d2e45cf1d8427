"""Process layout: a single process, or one rank of a torchrun / accelerate launch.

Under a launcher (``WORLD_SIZE`` > 1) the rank comes from ``accelerate.PartialState``. On a machine
without CUDA it must be created with ``cpu=True``, otherwise every rank believes it is alone and all of
them do all the work.

Single-writer stages (prompts with LLM polishing, pairs, publish) run on rank 0 while the other ranks wait
at a barrier, which can take hours on a large build; the process group's default timeout (10 minutes for
NCCL, 30 for gloo) would kill those waiting ranks. So the group is created with a timeout of
``$VISIONPREFER_DIST_TIMEOUT_S`` seconds (default 72 hours).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from typing import Any


@dataclass
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    state: Any = None  # accelerate.PartialState when launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None and self.world_size > 1:
            try:
                self.state.wait_for_everyone()
            except RuntimeError as e:  # gloo and NCCL report a timed-out collective as a RuntimeError
                if "time" not in str(e).lower():
                    raise
                from .errors import RanksTimedOut

                raise RanksTimedOut(
                    f"rank {self.rank}: timed out waiting for the other ranks (limit "
                    f"{dist_timeout().total_seconds():g} s; a single-writer stage on rank 0 may need longer: "
                    "raise VISIONPREFER_DIST_TIMEOUT_S); finished items are kept, rerun to resume"
                ) from None

    def launch_totals(self, report: Any, fields: tuple[str, ...]) -> None:
        """Wait for every rank (as :meth:`barrier`), then replace ``report``'s per-rank counters ``fields``
        and its ``failures`` (reason -> count) by their sums over the launch, on every rank: a summary, an
        exit code or a ``--strict`` decision then says the same on all of them, for the whole launch."""
        self.barrier()
        if self.state is None or self.world_size <= 1:
            return
        import torch.distributed as dist

        mine = ({f: getattr(report, f) for f in fields}, dict(getattr(report, "failures", {})))
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, mine)
        for f in fields:
            setattr(report, f, sum(counts[f] for counts, _ in gathered))
        if hasattr(report, "failures"):
            failures: dict[str, int] = {}
            for _, theirs in gathered:
                for reason, n in theirs.items():
                    failures[reason] = failures.get(reason, 0) + n
            report.failures = dict(sorted(failures.items()))


_CURRENT: ProcessInfo | None = None
DEFAULT_DIST_TIMEOUT_S = 72 * 3600


def dist_timeout() -> Any:
    """The process group's timeout: ``$VISIONPREFER_DIST_TIMEOUT_S`` seconds, default 72 hours."""
    from datetime import timedelta

    from .errors import ConfigError

    raw = os.environ.get("VISIONPREFER_DIST_TIMEOUT_S", "")
    try:
        seconds = float(raw) if raw.strip() else DEFAULT_DIST_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ConfigError(f"VISIONPREFER_DIST_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
    return timedelta(seconds=seconds)


def _destroy_process_group() -> None:
    """Tear the process group down while the interpreter is still whole. Left to interpreter
    finalisation, gloo's worker threads may still own work objects whose destruction needs the GIL, and
    the process dies with ``terminate called without an active exception`` (SIGABRT) after its work is
    done (pytorch/pytorch#190489). Local: no collective, so a rank that exits early does not wait."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_launch(code: int) -> None:
    """End a launched rank (``WORLD_SIZE`` > 1 and a process group made here) with exit status ``code``
    without interpreter finalisation; a no-op otherwise. The atexit teardown above is not enough once a
    transformers model has been loaded under the group: something then keeps the gloo backend alive, its
    worker threads outlive ``destroy_process_group``, and one that drops the last reference to a finished
    collective's work while the interpreter finalises aborts the rank (about 1 run in 5 on two busy CPU
    cores). Every file the stages write is closed by now; standard streams and logging are flushed first."""
    if _CURRENT is None or _CURRENT.state is None or _CURRENT.world_size <= 1:
        return
    import logging
    import sys

    _destroy_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream: nothing to flush
            stream.flush()
    os._exit(code)


def process_info() -> ProcessInfo:
    """The current process's rank and world size (created once per process)."""
    global _CURRENT
    if _CURRENT is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            state = PartialState(cpu=not torch.cuda.is_available(), timeout=dist_timeout())
            _CURRENT = ProcessInfo(state.process_index, state.num_processes, state.local_process_index, state)
            atexit.register(_destroy_process_group)
        else:
            _CURRENT = ProcessInfo()
    return _CURRENT
