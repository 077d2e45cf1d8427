"""Process layout: a single process, or one rank of a torchrun / accelerate launch.

Under a launcher (``WORLD_SIZE`` > 1) the rank comes from ``accelerate.PartialState``. On a machine
without CUDA it must be created with ``cpu=True``, otherwise every rank believes it is alone and all of
them do all the work.
"""

from __future__ import annotations

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
            self.state.wait_for_everyone()


_CURRENT: ProcessInfo | None = None


def process_info() -> ProcessInfo:
    """The current process's rank and world size (created once per process)."""
    global _CURRENT
    if _CURRENT is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            state = PartialState(cpu=not torch.cuda.is_available())
            _CURRENT = ProcessInfo(state.process_index, state.num_processes, state.local_process_index, state)
        else:
            _CURRENT = ProcessInfo()
    return _CURRENT
