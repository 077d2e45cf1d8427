"""The published dataset's columns, declared once in :data:`COLUMNS`: the Parquet writer (its Arrow schema),
the row functions of the publish stage, the card's column tables and its ``dataset_info`` features all read
them from here, and so do the tests.

Four configs, each with the splits ``train``, ``validation`` and ``test`` (by prompt, the same in every
config; the ``dpo`` export adds Pick-a-Pic's ``validation_unique`` and ``test_unique``):

* ``prompts`` — the cleaned (and polished) prompts;
* ``images`` (default) — one row per image with its generation metadata and feedback;
* ``pairs`` — every preference pair, ties included (``label_0`` 0.5);
* ``dpo`` — a superset of Pick-a-Pic v2's columns for Diffusion-DPO trainers and PickScore, ties dropped,
  encoded image bytes;

and, with ``publish.formats: [agfsync]``, ``agfsync`` — AGFSync's released DPO format (``caption``,
``good_jpg``, ``bad_jpg`` as images).

Every column is in every build's Parquet; a column declared ``only_with`` a condition (judge feedback,
metric feedback, ...) is null in the builds where the condition does not hold. This module imports neither
``datasets`` nor the rest of visionprefer at import time (``config`` imports it for
:func:`public_model_id`): :func:`features` builds the ``datasets`` objects on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import BuildConfig

CONFIG_NAMES = ("images", "prompts", "pairs", "dpo")
"""The configs of every build in the order of the card (``images`` is the default)."""

OPTIONAL_CONFIGS: dict[str, str] = {"agfsync": "agfsync"}
"""Configs written only when ``publish.formats`` names them: config name -> the format's name."""

ALL_CONFIG_NAMES = (*CONFIG_NAMES, *OPTIONAL_CONFIGS)

SPLITS = ("train", "validation", "test")
"""The splits of every config, by prompt (:mod:`visionprefer.publish.splits`)."""

UNIQUE_SPLITS = ("validation_unique", "test_unique")
"""The DPO export's extra splits, as Pick-a-Pic defines them: one row per prompt of validation / test."""

DPO_SPLITS = (*SPLITS, *UNIQUE_SPLITS)


def config_names(config: BuildConfig) -> tuple[str, ...]:
    """The configs a build of ``config`` publishes, in the card's order."""
    formats = set(config.publish.formats)
    return (*CONFIG_NAMES, *(name for name, fmt in OPTIONAL_CONFIGS.items() if fmt in formats))


def present_splits(config_name: str, counts: Mapping[str, int]) -> tuple[str, ...]:
    """The splits of one config that are published, given its rows per split: those with rows (``datasets``
    cannot load a split without any), or ``train`` alone, empty, when the config has no rows at all (so that
    the config and its features are still declared)."""
    present = tuple(s for s in split_names(config_name) if counts.get(s, 0) > 0)
    return present or ("train",)


def split_names(config_name: str) -> tuple[str, ...]:
    """The splits of one config: the DPO export adds Pick-a-Pic's ``*_unique`` splits."""
    return DPO_SPLITS if config_name == "dpo" else SPLITS


ASPECT_COLUMNS = ("prompt_following", "fidelity", "aesthetic", "harmlessness")
METRIC_FIELDS = ("vqa", "clip", "aesthetic", "cq", "pickscore", "hpsv2", "total")

# Column types: a `datasets.Value` dtype, "image" (`datasets.Image()`) or a struct {field: type}.
STRING, INT64, FLOAT32, FLOAT64, BOOL, BINARY, IMAGE = (
    "string",
    "int64",
    "float32",
    "float64",
    "bool",
    "binary",
    "image",
)
ASPECT_TYPE: Mapping[str, str] = {"score": FLOAT32, "explanation": STRING}
METRICS_TYPE: Mapping[str, str] = dict.fromkeys(METRIC_FIELDS, FLOAT32)

# Where the row functions of publish.stage take a column's value from.
RECORD = "record"  # the field of the same name of the stage's record (prompt, generation or pair record)
FEEDBACK = "feedback"  # the field of the same name of the image's feedback (annotate.stage.load_feedback)
DERIVED = "derived"  # computed by the config's row function (image cells, public model ids, DPO columns)


@dataclass(frozen=True)
class Condition:
    """When a column holds values: ``label`` for the card, ``holds`` for a build config."""

    label: str
    holds: Callable[[BuildConfig], bool]


CONDITIONS: dict[str, Condition] = {
    "feedback": Condition("feedback (judge or metrics)", lambda c: c.annotate.backend != "none"),
    "judge": Condition("judge feedback", lambda c: c.annotate.backend == "judge"),
    "metrics": Condition("metric feedback", lambda c: c.annotate.backend == "metrics"),
    "polish": Condition("prompt polishing", lambda c: c.prompts.polish.enabled),
    "pair_images": Condition("`publish.pair_images`", lambda c: c.publish.pair_images),
}


@dataclass(frozen=True)
class Column:
    """One published column: its config, name, type, meaning, where the writer takes its value from and
    the config condition without which it is null (``None``: filled in every build)."""

    config: str
    name: str
    type: str | Mapping[str, str]
    description: str
    source: str = RECORD
    only_with: str | None = None

    def feature(self) -> Any:
        """The column's ``datasets`` feature."""
        return _feature(self.type)

    def type_label(self) -> str:
        """The type as the card's column tables show it: ``string``, ``Image``, ``struct{score: float32, ...}``."""
        return _type_label(self.type)

    def filled(self, config: BuildConfig) -> bool:
        """Whether the column holds values in a build of ``config``."""
        return self.only_with is None or CONDITIONS[self.only_with].holds(config)


def _c(config: str, rows: list[tuple[Any, ...]]) -> tuple[Column, ...]:
    """One config's columns, in order, each row ``(name, type, description[, source[, only_with]])``."""
    return tuple(Column(config, *row) for row in rows)


# fmt: off
COLUMNS: tuple[Column, ...] = (
    *_c("prompts", [
        ("prompt_id", STRING, "key of the prompt: a digest of its source name and original text"),
        ("source", STRING, "name of the prompt source (file name, dataset id, or configured name)"),
        ("source_index", INT64, "row or line index of the prompt in its source"),
        ("original", STRING, "the prompt as read from the source"),
        ("prompt", STRING, "the prompt used for generation: cleaned, and polished when polishing is on"),
        ("polish_model", STRING, "the LLM that polished the prompt (null when polishing is off)", RECORD, "polish"),
        ("safety", STRING, "`ok`, or the reason the prompt was flagged unsafe"),
    ]),
    *_c("images", [
        ("image_id", STRING, "key of the image: a digest of prompt key, generator settings, guidance scale, "
         "sample index and seed"),
        ("prompt_id", STRING, "key of the prompt (joins `prompts`)"),
        ("prompt", STRING, "the prompt the image was generated from"),
        ("image", IMAGE, "the generated image", DERIVED),
        ("image_sha256", STRING, "SHA-256 of the stored image file"),
        ("generator", STRING, "generator preset (`sd15`, `sd21`, `dreamlike`, `sdxl`, `tiny-*`) or `custom`"),
        ("generator_name", STRING, "the generator's name in the build config"),
        ("model_id", STRING, "diffusers model id, or the folder name of a local model", DERIVED),
        ("revision", STRING, "model revision (commit) used"),
        ("pipeline", STRING, "diffusers pipeline class"),
        ("scheduler", STRING, "diffusers scheduler class"),
        ("steps", INT64, "number of inference steps"),
        ("guidance_scale", FLOAT32, "classifier-free guidance scale"),
        ("seed", INT64, "seed of the image's CPU torch.Generator"),
        ("sample_index", INT64, "index of the image among its prompt's samples for this generator and scale"),
        ("height", INT64, "image height in pixels"),
        ("width", INT64, "image width in pixels"),
        ("dtype", STRING, "torch dtype of the pipeline"),
        ("judge", STRING, "the judge model, or the feedback backend's name", FEEDBACK, "feedback"),
        ("guide_version", STRING, "content hash of the annotation guide the judge used (null for metric "
         "feedback)", FEEDBACK, "judge"),
        ("prompt_following", ASPECT_TYPE, "judge score and explanation: does the image show what the prompt "
         "asks?", FEEDBACK, "judge"),
        ("fidelity", ASPECT_TYPE, "judge score and explanation: is the depiction coherent (anatomy, shapes, "
         "physics)?", FEEDBACK, "judge"),
        ("aesthetic", ASPECT_TYPE, "judge score and explanation: how visually appealing is the image?",
         FEEDBACK, "judge"),
        ("harmlessness", ASPECT_TYPE, "judge score and explanation: is the image free of harmful content?",
         FEEDBACK, "judge"),
        ("metrics", METRICS_TYPE, "metric feedback: VQA score, CLIP score, LAION aesthetic score, CQ score, "
         "PickScore, HPS v2 (100 x cosine) and the weighted total; null where not computed", DERIVED, "metrics"),
        ("overall", FLOAT32, "the aggregate used for preferences (weighted mean of aspects, or the metric "
         "total)", FEEDBACK, "feedback"),
        ("rank", INT64, "rank of the image among its prompt's images by `overall` (1 = best; ties share a "
         "rank)", FEEDBACK, "feedback"),
    ]),
    *_c("pairs", [
        ("pair_id", STRING, "key of the pair: a digest of both image keys and the aspect"),
        ("prompt_id", STRING, "key of the prompt"),
        ("prompt", STRING, "the prompt"),
        ("aspect", STRING, "what the preference is about: an aspect, `overall`, or a metric name"),
        ("image_id_0", STRING, "key of image 0 (the smaller key of the two)"),
        ("image_id_1", STRING, "key of image 1"),
        ("image_0", IMAGE, "image 0", DERIVED, "pair_images"),
        ("image_1", IMAGE, "image 1", DERIVED, "pair_images"),
        ("generator_0", STRING, "name of image 0's generator in the build config (`generator_name`: the "
         "preset name unless `name` is set; unique within a build, so two custom models are told apart)"),
        ("generator_1", STRING, "name of image 1's generator in the build config"),
        ("guidance_scale_0", FLOAT32, "guidance scale of image 0"),
        ("guidance_scale_1", FLOAT32, "guidance scale of image 1"),
        ("score_0", FLOAT32, "score of image 0 on the aspect"),
        ("score_1", FLOAT32, "score of image 1 on the aspect"),
        ("label_0", FLOAT32, "1.0 when image 0 is preferred, 0.0 when image 1 is, 0.5 for a tie"),
    ]),
    *_c("dpo", [
        ("caption", STRING, "the prompt", DERIVED),
        ("jpg_0", BINARY, "encoded bytes of image 0 (as stored: PNG, JPEG or WebP)", DERIVED),
        ("jpg_1", BINARY, "encoded bytes of image 1", DERIVED),
        ("label_0", FLOAT64, "1.0 when image 0 is preferred, else 0.0 (no ties; float64 as in Pick-a-Pic)"),
        ("label_1", FLOAT64, "1 - label_0", DERIVED),
        ("pair_id", STRING, "key of the pair (joins `pairs`)"),
        ("prompt_id", STRING, "key of the prompt"),
        ("aspect", STRING, "the aspect the preference is about"),
        ("image_id_0", STRING, "key of image 0"),
        ("image_id_1", STRING, "key of image 1"),
        ("model_0", STRING, "model id of image 0 (the folder name of a local model)"),
        ("model_1", STRING, "model id of image 1"),
        ("image_0_uid", STRING, "Pick-a-Pic name of `image_id_0`", DERIVED),
        ("image_1_uid", STRING, "Pick-a-Pic name of `image_id_1`", DERIVED),
        ("ranking_id", INT64, "Pick-a-Pic's int64 example id: the first 15 hex digits of `pair_id` as an "
         "integer", DERIVED),
        ("best_image_uid", STRING, "uid of the preferred image", DERIVED),
        ("has_label", BOOL, "whether the row carries a preference: always true here (ties are dropped)",
         DERIVED),
        ("are_different", BOOL, "whether the two image files differ (their bytes)", DERIVED),
        ("num_example_per_prompt", INT64, "rows of this prompt in this split (PickScore weighs examples by "
         "its inverse)", DERIVED),
    ]),
    *_c("agfsync", [
        ("caption", STRING, "the prompt", DERIVED),
        ("good_jpg", IMAGE, "the preferred image", DERIVED),
        ("bad_jpg", IMAGE, "the other image", DERIVED),
        ("pair_id", STRING, "key of the pair (joins `pairs` and `dpo`)"),
        ("prompt_id", STRING, "key of the prompt"),
        ("aspect", STRING, "the aspect the preference is about"),
    ]),
)
# fmt: on


def columns(config_name: str, source: str | None = None) -> tuple[Column, ...]:
    """The columns of one config in table (and Parquet) order; with ``source``, only those taken from it."""
    if config_name not in ALL_CONFIG_NAMES:
        raise ValueError(f"unknown dataset config {config_name!r}")
    return tuple(c for c in COLUMNS if c.config == config_name and (source is None or c.source == source))


def column_names(config_name: str, source: str | None = None) -> tuple[str, ...]:
    return tuple(c.name for c in columns(config_name, source))


def features(config_name: str) -> Any:
    """The ``datasets.Features`` of one config (its ``arrow_schema`` is the Parquet files' schema)."""
    from datasets import Features

    return Features({c.name: c.feature() for c in columns(config_name)})


def _feature(spec: str | Mapping[str, str]) -> Any:
    from datasets import Image, Value

    if isinstance(spec, Mapping):
        return {k: _feature(v) for k, v in spec.items()}
    return Image() if spec == IMAGE else Value(spec)


def _type_label(spec: str | Mapping[str, str]) -> str:
    if isinstance(spec, Mapping):
        return "struct{" + ", ".join(f"{k}: {_type_label(v)}" for k, v in spec.items()) + "}"
    return "Image" if spec == IMAGE else spec


def public_model_id(model_id: str | None) -> str | None:
    """A model id as published: a Hub id as it is, a local model folder given by an absolute (or ``~``) path
    as its folder name, so that no published column or card holds a path of the machine that built it."""
    if model_id is None:
        return None
    from pathlib import Path

    if model_id.startswith("~") or Path(model_id).is_absolute():
        return Path(model_id).name
    return model_id
