"""Metric-feedback scorers (AGFSync-style): CLIP score, LAION aesthetic v2, BLIP VQA over template questions.

Importing this package is cheap: the model classes (and torch/transformers) load on first attribute access.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .questions import template_questions, vqa_score

if TYPE_CHECKING:  # pragma: no cover
    from .aesthetic import AestheticMLP, AestheticScorer
    from .clip_score import CLIPScorer, clip_score_mean
    from .vqa import BlipVQA


@runtime_checkable
class ImageTextScorer(Protocol):
    """Anything that scores images against their prompts: one float per image, in input order."""

    higher_is_better: bool

    def score(self, prompts: Sequence[str], images: Sequence[Any]) -> np.ndarray: ...


_LAZY = {
    "CLIPScorer": ".clip_score",
    "clip_score_mean": ".clip_score",
    "AestheticScorer": ".aesthetic",
    "AestheticMLP": ".aesthetic",
    "BlipVQA": ".vqa",
    "HPSv2Scorer": ".hpsv2",
    "PickScoreScorer": ".pickscore",
    "CQScorer": ".cq",
}

__all__ = [
    "AestheticMLP",
    "AestheticScorer",
    "BlipVQA",
    "CLIPScorer",
    "ImageTextScorer",
    "clip_score_mean",
    "template_questions",
    "vqa_score",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
