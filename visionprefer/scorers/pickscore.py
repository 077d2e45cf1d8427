"""PickScore (Kirstain et al., 2023): a CLIP-H fine-tuned on Pick-a-Pic human preferences.

The model ``yuvalkirstain/PickScore_v1`` is used with the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (the checkpoint ships none). Score = ``logit_scale.exp() x cos``
(image, prompt), both embeddings L2-normalised; a softmax over one prompt's images gives the probability that
a person would pick each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .clip_score import CLIPScorer

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScoreScorer(CLIPScorer):
    higher_is_better = True
    name = "pickscore"

    def __init__(
        self,
        model_id: str = PICKSCORE_MODEL,
        *,
        processor_id: str | None = PICKSCORE_PROCESSOR,
        device: str = "auto",
        batch_size: int = 16,
    ):
        super().__init__(model_id, device=device, batch_size=batch_size, processor_id=processor_id)
        self.logit_scale = float(self.model.logit_scale.detach().exp().cpu())

    def score_embeddings(self, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
        cos = super().score_embeddings(image_embeddings, text_embeddings) / 100.0
        return self.logit_scale * cos

    def probabilities(self, prompt: str, images: Sequence[Any]) -> np.ndarray:
        """Softmax of the scores of one prompt's images: the chance each is the one a person picks."""
        scores = self.score([prompt] * len(images), images)
        z = np.exp(scores - scores.max())
        return z / z.sum()
