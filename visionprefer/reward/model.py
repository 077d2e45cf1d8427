"""The reward model: a CLIP-family ``transformers`` model scoring (prompt, image) pairs.

score = logit_scale · cos(image embedding, text embedding), as PickScore and HPS do; the pairwise loss is
the cross-entropy of softmax(score_0, score_1) against (label_0, 1 − label_0), so a tie (0.5) asks for equal
scores. ``PairScorer`` wraps the model so that one ``forward`` computes both images' scores: under DDP the
gradients are synchronised only for what goes through the wrapped module's forward.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ModelLoadError, first_line

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp


def load_base_model(name: str) -> tuple[Any, Any]:
    """(model, processor) of a CLIP-like model, or ModelLoadError naming why it is not one."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from ..models.tiny import is_tiny, tiny_model_path

    path = str(tiny_model_path(name)) if is_tiny(name) else name
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"base model {name!r}: cannot load its config ({first_line(e)})") from None
    kind = getattr(config, "model_type", "?")
    if getattr(config, "text_config", None) is None or getattr(config, "vision_config", None) is None:
        raise ModelLoadError(
            f"base model {name!r} (model_type {kind!r}) is not CLIP-like: it needs a text and a vision tower "
            "sharing an embedding space (CLIP, PickScore, HPS, SigLIP, ...)"
        )
    try:
        model = AutoModel.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"base model {name!r}: cannot load it ({first_line(e)})") from None
    import torch

    scale = getattr(model, "logit_scale", None)
    if not (
        callable(getattr(model, "get_text_features", None))
        and callable(getattr(model, "get_image_features", None))
        and isinstance(scale, torch.nn.Parameter)
    ):
        raise ModelLoadError(
            f"base model {name!r} ({type(model).__name__}) is not CLIP-like: no get_text_features/"
            "get_image_features/logit_scale"
        )
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
        raise ModelLoadError(f"base model {name!r}: its processor lacks a tokenizer or an image processor")
    return model, processor


def _pooled(out: Any) -> Any:
    """transformers 5 returns a BaseModelOutputWithPooling from get_*_features; 4.x a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


def make_pair_scorer(model: Any) -> Any:
    import torch
    import torch.nn.functional as F

    class PairScorer(torch.nn.Module):
        def __init__(self, clip: Any):
            super().__init__()
            self.clip = clip

        def embed(self, input_ids, attention_mask, pixel_values):
            text = _pooled(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
            image = _pooled(self.clip.get_image_features(pixel_values=pixel_values))
            return F.normalize(text, dim=-1), F.normalize(image, dim=-1)

        def forward(self, input_ids, attention_mask, pixel_values):
            """Scores (B, 2) of images 0 and 1 (``pixel_values``: B images 0, then B images 1)."""
            text, image = self.embed(input_ids, attention_mask, pixel_values)
            b = text.shape[0]
            scale = self.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
            s0 = (image[:b] * text).sum(-1)
            s1 = (image[b:] * text).sum(-1)
            return scale * torch.stack([s0, s1], dim=1)

    return PairScorer(model)


def pair_loss(scores: Any, labels: Any) -> Any:
    """Mean pairwise cross-entropy; per-pair losses with ``reduction='none'``."""
    import torch

    target = torch.stack([labels, 1.0 - labels], dim=1).to(scores.dtype)
    return -(target * torch.log_softmax(scores.float(), dim=1)).sum(dim=1)


class BatchMaker:
    """Tokenised prompts and pixel tensors of a list of pairs (images 0 then images 1)."""

    def __init__(self, processor: Any, max_text_length: int | None, model_config: Any):
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        limit = getattr(getattr(model_config, "text_config", None), "max_position_embeddings", None) or 77
        self.max_length = min(max_text_length or limit, limit)

    def __call__(self, rows: dict[str, list]) -> dict[str, Any]:
        import torch

        text = self.tokenizer(
            list(rows["prompt"]),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        images = [im.convert("RGB") for im in list(rows["image_0"]) + list(rows["image_1"])]
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
            "pixel_values": pixels,
            "labels": torch.tensor([float(x) for x in rows["label_0"]], dtype=torch.float32),
        }
