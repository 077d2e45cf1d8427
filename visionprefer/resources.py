"""Files the package reads at run time: annotation guides, benchmark specs, the dataset card's template
and the example configs.

In the repository they sit at the top level (``annotation_guides/``, ``benchmarks/specs/``,
``DATASET_CARD.md``, ``examples/``); a built wheel carries them under ``visionprefer/_data/``. This module
finds them in either place.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_path(relative: str) -> Path:
    """Absolute path of a packaged data file or folder, e.g. ``data_path("examples/quickstart.yaml")``."""
    for root in (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parent):
        candidate = root / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"packaged data file {relative!r} is missing from this installation")
