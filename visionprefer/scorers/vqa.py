"""BLIP visual question answering (``Salesforce/blip-vqa-base``): short free-form answers, batched.

Answers are generated greedily (deterministic), decoded without special tokens, stripped and lower-cased.
Scoring them against expected answers is :func:`visionprefer.scorers.questions.vqa_score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models.text_embed import resolve_model_path
from ._common import as_rgb, batches, check_batch_size, load_error, resolve_device

DEFAULT_VQA = "Salesforce/blip-vqa-base"


class BlipVQA:
    """One loaded BLIP VQA model. ``answer(images, questions)`` gives one answer string per question."""

    def __init__(
        self,
        model_id: str = DEFAULT_VQA,
        *,
        device: str = "auto",
        batch_size: int = 16,
        max_new_tokens: int = 10,
    ):
        import torch
        from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

        self.model_id = model_id
        self.batch_size = check_batch_size(batch_size)
        self.max_new_tokens = max_new_tokens
        path = resolve_model_path(model_id)
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.model = AutoModelForVisualQuestionAnswering.from_pretrained(path)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise load_error("VQA model", model_id, e) from None
        if not hasattr(self.model, "generate"):
            raise load_error("VQA model", model_id, TypeError("the model cannot generate answers"))
        self.device = resolve_device(device)
        self.model.eval().to(self.device)
        self.tokenizer = self.processor.tokenizer
        text_positions = getattr(
            getattr(self.model.config, "text_config", None), "max_position_embeddings", 512
        )
        self.max_length = min(int(self.tokenizer.model_max_length), int(text_positions))
        self._torch = torch

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """Answer ``questions[i]`` about ``images[i]``; lower-cased, stripped strings in input order."""
        images = list(images)
        questions = [str(q) for q in questions]
        if len(images) != len(questions):
            raise ValueError(
                f"{len(questions)} questions for {len(images)} images: pair each question with an image"
            )
        torch = self._torch
        answers: list[str] = []
        for idx in batches(range(len(questions)), self.batch_size):
            pixels = self.processor.image_processor(
                images=[as_rgb(images[i]) for i in idx], return_tensors="pt"
            )["pixel_values"]
            tokens = self.tokenizer(
                [questions[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                    pixel_values=pixels.to(self.device),
                    max_new_tokens=self.max_new_tokens,
                    num_beams=1,
                    do_sample=False,
                )
            decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
            answers.extend(" ".join(text.split()).strip().lower() for text in decoded)
        return answers

    def answer_each(self, image: Any, questions: Sequence[str]) -> list[str]:
        """Answer several questions about one image."""
        return self.answer([image] * len(questions), questions)
