"""The published dataset's schema, defined once: the writer, the card and the tests all read it from here.

Four configs, one split (``train``) each:

* ``prompts`` — the cleaned (and polished) prompts;
* ``images`` (default) — one row per image with its generation metadata and feedback;
* ``pairs`` — every preference pair, ties included (``label_0`` 0.5);
* ``dpo`` — Pick-a-Pic-style columns for Diffusion-DPO trainers, ties dropped, encoded image bytes.
"""

from __future__ import annotations

from typing import Any

ASPECT_COLUMNS = ("prompt_following", "fidelity", "aesthetic", "harmlessness")
METRIC_FIELDS = ("vqa", "clip", "aesthetic", "cq", "pickscore", "hpsv2", "total")

# Column descriptions: the card lists every column from here, and a test checks none is missing.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "prompts": {
        "prompt_id": "key of the prompt: a digest of its source name and original text",
        "source": "name of the prompt source (file name, dataset id, or configured name)",
        "source_index": "row or line index of the prompt in its source",
        "original": "the prompt as read from the source",
        "prompt": "the prompt used for generation: cleaned, and polished when polishing is on",
        "polish_model": "the LLM that polished the prompt (null when polishing is off)",
        "safety": "`ok`, or the reason the prompt was flagged unsafe",
    },
    "images": {
        "image_id": "key of the image: a digest of prompt key, generator settings, guidance scale, sample index "
        "and seed",
        "prompt_id": "key of the prompt (joins `prompts`)",
        "prompt": "the prompt the image was generated from",
        "image": "the generated image",
        "image_sha256": "SHA-256 of the stored image file",
        "generator": "generator preset (`sd15`, `sd21`, `dreamlike`, `sdxl`, `tiny-*`) or `custom`",
        "generator_name": "the generator's name in the build config",
        "model_id": "diffusers model id, or the folder name of a local model",
        "revision": "model revision (commit) used",
        "pipeline": "diffusers pipeline class",
        "scheduler": "diffusers scheduler class",
        "steps": "number of inference steps",
        "guidance_scale": "classifier-free guidance scale",
        "seed": "seed of the image's CPU torch.Generator",
        "sample_index": "index of the image among its prompt's samples for this generator and scale",
        "height": "image height in pixels",
        "width": "image width in pixels",
        "dtype": "torch dtype of the pipeline",
        "judge": "the judge model, or the feedback backend's name",
        "guide_version": "content hash of the annotation guide the judge used (null for metric feedback)",
        "prompt_following": "judge score and explanation: does the image show what the prompt asks?",
        "fidelity": "judge score and explanation: is the depiction coherent (anatomy, shapes, physics)?",
        "aesthetic": "judge score and explanation: how visually appealing is the image?",
        "harmlessness": "judge score and explanation: is the image free of harmful content?",
        "metrics": "metric feedback: VQA score, CLIP score, LAION aesthetic score, CQ score, PickScore, HPS v2 "
        "(100 x cosine) and the weighted total; null where not computed",
        "overall": "the aggregate used for preferences (weighted mean of aspects, or the metric total)",
        "rank": "rank of the image among its prompt's images by `overall` (1 = best; ties share a rank)",
    },
    "pairs": {
        "pair_id": "key of the pair: a digest of both image keys and the aspect",
        "prompt_id": "key of the prompt",
        "prompt": "the prompt",
        "aspect": "what the preference is about: an aspect, `overall`, or a metric name",
        "image_id_0": "key of image 0 (the smaller key of the two)",
        "image_id_1": "key of image 1",
        "image_0": "image 0",
        "image_1": "image 1",
        "generator_0": "name of image 0's generator in the build config (`generator_name`: the preset name "
        "unless `name` is set; unique within a build, so two custom models are told apart)",
        "generator_1": "name of image 1's generator in the build config",
        "guidance_scale_0": "guidance scale of image 0",
        "guidance_scale_1": "guidance scale of image 1",
        "score_0": "score of image 0 on the aspect",
        "score_1": "score of image 1 on the aspect",
        "label_0": "1.0 when image 0 is preferred, 0.0 when image 1 is, 0.5 for a tie",
    },
    "dpo": {
        "caption": "the prompt",
        "jpg_0": "encoded bytes of image 0 (as stored: PNG, JPEG or WebP)",
        "jpg_1": "encoded bytes of image 1",
        "label_0": "1.0 when image 0 is preferred, else 0.0 (no ties)",
        "label_1": "1 - label_0",
        "pair_id": "key of the pair (joins `pairs`)",
        "prompt_id": "key of the prompt",
        "aspect": "the aspect the preference is about",
        "image_id_0": "key of image 0",
        "image_id_1": "key of image 1",
        "model_0": "model id of image 0 (the folder name of a local model)",
        "model_1": "model id of image 1",
    },
}


def public_model_id(model_id: str | None) -> str | None:
    """A model id as published: a Hub id as it is, a local model folder given by an absolute (or ``~``) path
    as its folder name, so that no published column or card holds a path of the machine that built it."""
    if model_id is None:
        return None
    from pathlib import Path

    if model_id.startswith("~") or Path(model_id).is_absolute():
        return Path(model_id).name
    return model_id


def features(config_name: str) -> Any:
    """The ``datasets.Features`` of one config."""
    from datasets import Features, Image, Value

    s, f32, i64, b = Value("string"), Value("float32"), Value("int64"), Value("binary")
    aspect = {"score": f32, "explanation": s}
    if config_name == "prompts":
        return Features(
            {
                "prompt_id": s,
                "source": s,
                "source_index": i64,
                "original": s,
                "prompt": s,
                "polish_model": s,
                "safety": s,
            }
        )
    if config_name == "images":
        return Features(
            {
                "image_id": s,
                "prompt_id": s,
                "prompt": s,
                "image": Image(),
                "image_sha256": s,
                "generator": s,
                "generator_name": s,
                "model_id": s,
                "revision": s,
                "pipeline": s,
                "scheduler": s,
                "steps": i64,
                "guidance_scale": f32,
                "seed": i64,
                "sample_index": i64,
                "height": i64,
                "width": i64,
                "dtype": s,
                "judge": s,
                "guide_version": s,
                **dict.fromkeys(ASPECT_COLUMNS, aspect),
                "metrics": dict.fromkeys(METRIC_FIELDS, f32),
                "overall": f32,
                "rank": i64,
            }
        )
    if config_name == "pairs":
        return Features(
            {
                "pair_id": s,
                "prompt_id": s,
                "prompt": s,
                "aspect": s,
                "image_id_0": s,
                "image_id_1": s,
                "image_0": Image(),
                "image_1": Image(),
                "generator_0": s,
                "generator_1": s,
                "guidance_scale_0": f32,
                "guidance_scale_1": f32,
                "score_0": f32,
                "score_1": f32,
                "label_0": f32,
            }
        )
    if config_name == "dpo":
        return Features(
            {
                "caption": s,
                "jpg_0": b,
                "jpg_1": b,
                "label_0": f32,
                "label_1": f32,
                "pair_id": s,
                "prompt_id": s,
                "aspect": s,
                "image_id_0": s,
                "image_id_1": s,
                "model_0": s,
                "model_1": s,
            }
        )
    raise ValueError(f"unknown dataset config {config_name!r}")


CONFIG_NAMES = ("images", "prompts", "pairs", "dpo")
