"""Helpers shared by the scorers: device choice, image coercion, one-line load errors, batching."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, first_line


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_error(kind: str, model_id: str, error: BaseException) -> ModelLoadError:
    return ModelLoadError(f"cannot load {kind} {model_id!r}: {first_line(error)}")


def as_rgb(image: Any):
    """A PIL RGB image from a PIL image, a path, or an HxWx3 uint8 array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, str | os.PathLike):
        with Image.open(Path(image)) as opened:
            return opened.convert("RGB")
    try:
        import numpy as np

        if isinstance(image, np.ndarray):
            return Image.fromarray(image).convert("RGB")
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise TypeError(f"expected a PIL image, a path or a numpy array, got {type(image).__name__}")


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def cache_root() -> Path:
    """``$VISIONPREFER_CACHE``, else ``~/.cache/visionprefer`` (downloaded weights that are not on the Hub)."""
    from ..download import cache_root as root

    return root()
