"""CLIP score: 100 x cosine(image embedding, prompt embedding), with a transformers ``CLIPModel``.

Definition (Hessel et al. 2021; torchmetrics ``CLIPScore`` with ``openai/clip-vit-large-patch14``): both
embeddings are the projected CLIP features, L2-normalised; the per-image score is ``100 * cos``. It is
returned raw here (it can be negative). torchmetrics additionally clamps the *mean* over a set of images at 0
(``max(mean, 0)``, not each image): :func:`clip_score_mean` reproduces that for reporting. Prompts longer than
the text model's context (77 tokens for OpenAI CLIP) are truncated, as torchmetrics does.

The model is loaded once and used in batches; tiny names such as ``tiny-clip`` resolve to the local
random-weight factory models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.text_embed import resolve_model_path
from ._common import as_rgb, batches, check_batch_size, load_error, resolve_device

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def clip_score_mean(scores: Sequence[float] | np.ndarray) -> float:
    """torchmetrics' aggregate CLIP score: ``max(mean(scores), 0)`` over per-image ``100 x cos`` scores."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("clip_score_mean needs at least one score")
    return max(float(values.mean()), 0.0)


class CLIPScorer:
    """CLIP image/text embeddings and CLIP score from one loaded ``CLIPModel``.

    ``score(prompts, images)`` gives, per image, ``100 x cos(image, its prompt)`` (float64 array).
    """

    higher_is_better = True
    name = "clip"

    def __init__(
        self,
        model_id: str = DEFAULT_CLIP,
        *,
        device: str = "auto",
        batch_size: int = 16,
        processor_id: str | None = None,
    ):
        import torch
        from transformers import AutoProcessor, CLIPModel

        self.model_id = model_id
        self.processor_id = processor_id
        self.batch_size = check_batch_size(batch_size)
        path = resolve_model_path(model_id)
        try:
            self.processor = AutoProcessor.from_pretrained(
                resolve_model_path(processor_id) if processor_id else path
            )
            self.model = CLIPModel.from_pretrained(path)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise load_error("CLIP model", model_id, e) from None
        self.device = resolve_device(device)
        self.model.eval().to(self.device)
        self.tokenizer = self.processor.tokenizer
        text_positions = self.model.config.text_config.max_position_embeddings
        self.max_length = min(int(self.tokenizer.model_max_length), int(text_positions))
        self.embedding_dim = int(self.model.config.projection_dim)
        self._torch = torch

    # ------------------------------------------------------------------------------------------ embeddings
    def _normalised(self, features) -> np.ndarray:
        torch = self._torch
        return torch.nn.functional.normalize(features.float(), p=2, dim=-1).cpu().numpy().astype(np.float32)

    def image_embeddings(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised projected image embeddings, shape ``(len(images), projection_dim)``, float32."""
        torch = self._torch
        rows = []
        for batch in batches(list(images), self.batch_size):
            pixels = self.processor(images=[as_rgb(im) for im in batch], return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                out = self.model.get_image_features(pixel_values=pixels.to(self.device))
            rows.append(self._normalised(out.pooler_output))
        if not rows:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(rows)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised projected text embeddings (texts truncated to the model's context), float32."""
        torch = self._torch
        rows = []
        for batch in batches(list(texts), self.batch_size):
            tokens = self.tokenizer(
                list(batch), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            with torch.inference_mode():
                out = self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            rows.append(self._normalised(out.pooler_output))
        if not rows:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(rows)

    # ------------------------------------------------------------------------------------------ scores
    def score_embeddings(self, image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
        """``100 x`` row-wise dot product of already-normalised embeddings (float64)."""
        a = np.asarray(image_embeddings, dtype=np.float64)
        b = np.asarray(text_embeddings, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
        return 100.0 * np.einsum("ij,ij->i", a, b)

    def score(self, prompts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        """Per image ``100 x cos(image, prompt)``; ``prompts[i]`` belongs to ``images[i]``. Raw, not clamped."""
        prompts = list(prompts)
        images = list(images)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        if not images:
            return np.zeros(0, dtype=np.float64)
        # A prompt's candidates share one text embedding.
        unique = list(dict.fromkeys(prompts))
        text = self.text_embeddings(unique)
        index = {p: i for i, p in enumerate(unique)}
        text_rows = text[[index[p] for p in prompts]]
        return self.score_embeddings(self.image_embeddings(images), text_rows)
