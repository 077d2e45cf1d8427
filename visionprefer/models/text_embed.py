"""Sentence embeddings with transformers: mean pooling over the attention mask, then L2 normalisation.

This is the sentence-transformers recipe for models such as ``all-MiniLM-L6-v2`` and ``all-mpnet-base-v2``,
done with plain ``AutoModel`` so that sentence-transformers is not a dependency. Used for near-duplicate
prompt removal and for mapping free-form VQA answers to choices.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError, first_line


def resolve_model_path(model_id: str) -> Any:
    from .tiny import is_tiny, tiny_model_path

    return tiny_model_path(model_id) if is_tiny(model_id) else model_id


class SentenceEmbedder:
    def __init__(self, model_id: str, *, device: str = "auto", batch_size: int = 64, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(model_id)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            first = first_line(e)
            raise ModelLoadError(f"cannot load sentence-embedding model {model_id!r}: {first}") from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model.eval().to(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: list[str]):
        """L2-normalised embeddings, one row per text (a float32 numpy array)."""
        import numpy as np

        torch = self._torch
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled.float(), p=2, dim=1).cpu().numpy())
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)
