from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from visionprefer.scorers.clip_score import CLIPScorer
from visionprefer.scorers.pickscore import PickScoreScorer


def _images(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


def test_pickscore_is_logit_scale_times_cosine_and_softmax():
    images = _images(3)
    prompt = "a photo of a cat"
    pick = PickScoreScorer("tiny-clip", processor_id="tiny-clip")
    clip = CLIPScorer("tiny-clip")
    scale = float(clip.model.logit_scale.exp())
    cos = clip.score([prompt] * 3, images) / 100.0
    scores = pick.score([prompt] * 3, images)
    assert np.allclose(scores, scale * cos, atol=1e-5)
    # Independent check of the cosine from the model's own projected features.
    px = clip.processor(images=images, return_tensors="pt")["pixel_values"]
    tok = clip.tokenizer([prompt], return_tensors="pt", padding=True)
    with torch.inference_mode():
        img = clip.model.get_image_features(pixel_values=px).pooler_output
        txt = clip.model.get_text_features(**tok).pooler_output
    manual = torch.nn.functional.cosine_similarity(img, txt.expand_as(img)).numpy()
    assert np.allclose(scores, scale * manual, atol=1e-4)
    probs = pick.probabilities(prompt, images)
    assert np.isclose(probs.sum(), 1.0) and np.allclose(
        probs, np.exp(scores) / np.exp(scores).sum(), atol=1e-6
    )
