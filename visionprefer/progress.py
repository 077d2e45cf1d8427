"""Progress bars: items, rate and ETA on a terminal; nothing at all with --quiet or when not a TTY."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


@contextmanager
def progress_bar(*, total: int, desc: str, unit: str = "it", enabled: bool = True):
    if not enabled or not sys.stderr.isatty() or total == 0:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar: Any = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()
