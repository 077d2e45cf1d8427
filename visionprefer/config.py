"""Build configuration: YAML files loaded into frozen, self-validating dataclasses.

A config is data. :func:`load_config` reads a YAML file, checks every key and type against the dataclasses
below, and returns a :class:`BuildConfig`. Unknown keys and wrong types are :class:`ConfigError` naming the
key (as a dotted path) and the valid choices.

Paths: prompt-source paths are relative to the config file's folder (so a config travels with its data);
``run_dir``, like ``--out``, is relative to the working directory.

Secrets are never config values: a backend names the environment variable that holds its key
(``api_key_env``), and a key that looks like a secret is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

SECRET_WORDS = ("api_key", "apikey", "token", "password", "secret")


# --------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class SourceConfig:
    """One prompt source: a local file (TXT, JSONL, JSON array, CSV/TSV, Parquet) or a Hugging Face dataset."""

    path: str | None = None
    # a Hub dataset id (or a local dataset folder) read with datasets.load_dataset
    hf_dataset: str | None = None
    benchmark: str | None = (
        None  # partiprompts, drawbench, geneval, imagereward (downloaded, checked, cached)
    )
    split: str = "train"  # Hub datasets only
    data_files: str | tuple[str, ...] | None = None  # Hub datasets only, e.g. DiffusionDB's metadata.parquet
    subset: str | None = None  # Hub datasets only: the config name
    revision: str | None = None  # Hub datasets only
    format: Literal["auto", "txt", "jsonl", "json", "csv", "tsv", "parquet"] = "auto"
    column: str | None = None  # column / JSON key holding the prompt; default "prompt" for structured files
    name: str | None = None  # enters every prompt key; default: the file name or dataset id
    limit: int | None = None  # read at most this many records

    def __post_init__(self) -> None:
        if self.benchmark is not None:
            from .prompts.benchmarks import benchmark_spec

            benchmark_spec(self.benchmark)  # unknown name: error now, listing the known ones
            if self.hf_dataset is not None:
                raise ConfigError("prompts.sources[]: `benchmark` and `hf_dataset` cannot be combined")
        elif (self.path is None) == (self.hf_dataset is None):
            raise ConfigError(
                "prompts.sources[]: give exactly one of `path` (a local file), `hf_dataset` or `benchmark`"
            )
        if self.path is not None and not self.path.strip():
            raise ConfigError("prompts.sources[].path: must not be empty")
        _positive("prompts.sources[].limit", self.limit, allow_none=True)

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        if self.benchmark is not None:
            return self.benchmark
        return Path(self.path).name if self.path is not None else str(self.hf_dataset)


@dataclass(frozen=True)
class LLMConfig:
    """One LLM / VLM endpoint: the OpenAI API or any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

    The API key is read from the environment variable named by ``api_key_env``; it is never a config value.
    Concurrency and rate limits enter no key: changing them never repeats a request.
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: the OpenAI API
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 60.0
    max_attempts: int = 4  # attempts per request in one run for 429/5xx/timeouts before it is a failure
    backoff_s: float = 1.0  # first back-off; doubles per attempt, capped at max_backoff_s
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is a failure for this run, retried next run
    max_cost_usd: float | None = None  # per stage, over the whole run directory; stops cleanly before it
    temperature: float = 0.0
    max_tokens: int = 512
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    invalid_retries: int = 1  # re-asks with the validation error before an answer is a permanent failure

    def __post_init__(self) -> None:
        _positive("llm.concurrency", self.concurrency)
        _positive("llm.max_attempts", self.max_attempts)
        _positive("llm.max_tokens", self.max_tokens)
        if self.timeout_s <= 0:
            raise ConfigError(f"llm.timeout_s: must be positive, got {self.timeout_s}")
        for key in ("requests_per_minute", "tokens_per_minute", "max_cost_usd"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"llm.{key}: must be positive, got {value}")
        if self.invalid_retries < 0:
            raise ConfigError(f"llm.invalid_retries: must be 0 or more, got {self.invalid_retries}")


@dataclass(frozen=True)
class PriceConfig:
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    batch_discount: float = 0.5  # Batch API price factor


@dataclass(frozen=True)
class PolishConfig:
    """Prompt polishing through an LLM: fix grammar, remove NSFW content and private names, keep the meaning."""

    enabled: bool = False
    llm: LLMConfig = field(default_factory=LLMConfig)
    template: str | None = (
        None  # instruction file; default: the packaged annotation_guides/prompt_polishing.md
    )
    max_length_ratio: float = 3.0  # an answer longer than this times the input (+40 chars) is a failure


@dataclass(frozen=True)
class SafetyConfig:
    """Unsafe prompts: judged by the polishing model (``polish``) or a moderation endpoint (``moderation``)."""

    mode: Literal["off", "polish", "moderation"] = "off"
    action: Literal["flag", "drop"] = "drop"  # flag: keep with the reason in `safety`; drop: reject
    moderation_model: str = "omni-moderation-latest"
    llm: LLMConfig | None = None  # the moderation endpoint; default: the polishing connection


@dataclass(frozen=True)
class NearDedupConfig:
    """Near-duplicate removal by sentence-embedding cosine (AGFSync dropped pairs at cosine >= 0.9)."""

    enabled: bool = False
    threshold: float = 0.9
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"prompts.near_dedup.threshold: {self.threshold} is not a cosine in [-1, 1]")


@dataclass(frozen=True)
class PromptsConfig:
    sources: tuple[SourceConfig, ...]
    sample: int | None = None  # keep N prompts drawn with sample_seed (after cleaning)
    sample_seed: int = 0
    min_chars: int = 1
    max_chars: int = 1000
    dedup: bool = True  # drop exact duplicates (after whitespace cleaning), keeping the first
    polish: PolishConfig = field(default_factory=PolishConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)

    def __post_init__(self) -> None:
        if self.safety.mode == "polish" and not self.polish.enabled:
            raise ConfigError(
                "prompts.safety.mode: 'polish' needs prompts.polish.enabled: true (or use 'moderation')"
            )
        if not self.sources:
            raise ConfigError("prompts.sources: at least one source is required")
        _positive("prompts.sample", self.sample, allow_none=True)
        _positive("prompts.min_chars", self.min_chars)
        if self.max_chars < self.min_chars:
            raise ConfigError(f"prompts.max_chars: {self.max_chars} is below min_chars {self.min_chars}")


@dataclass(frozen=True)
class GeneratorConfig:
    """A text-to-image model: a preset name (sd15, sd21, dreamlike, sdxl, tiny-*) or a diffusers id/path."""

    preset: str | None = None
    model: str | None = None  # diffusers model id or local path (overrides the preset's)
    name: str | None = None  # label in keys and the dataset; default: the preset name or "custom"
    revision: str | None = None
    steps: int | None = None
    height: int | None = None
    width: int | None = None
    scheduler: str | None = None  # a diffusers scheduler class name, built from the model's config
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    guidance_scales: tuple[float, ...] | None = None  # overrides generate.guidance_scales
    negative_prompt: str | None = None
    # AGFSync's candidates: sample 0 uses the clean text embedding, samples 1..N-1 add Gaussian noise of this
    # standard deviation to it (0.1 in the paper), each with its own seed. None: off.
    embedding_noise: float | None = None

    def __post_init__(self) -> None:
        if self.embedding_noise is not None and self.embedding_noise < 0:
            raise ConfigError(f"generate.generators[].embedding_noise: {self.embedding_noise} is negative")
        if self.preset is None and self.model is None:
            raise ConfigError("generate.generators[]: give a preset or a model (id or path)")
        if self.preset is not None:
            from .generate.presets import get_preset

            get_preset(self.preset)  # unknown preset: error now, naming the valid ones
        for key in ("steps", "height", "width"):
            _positive(f"generate.generators[].{key}", getattr(self, key), allow_none=True)
        for key in ("height", "width"):
            value = getattr(self, key)
            if value is not None and value % 8:
                raise ConfigError(f"generate.generators[].{key}: {value} is not a multiple of 8")
        if self.guidance_scales is not None and not self.guidance_scales:
            raise ConfigError("generate.generators[].guidance_scales: must not be empty")


@dataclass(frozen=True)
class GenerateConfig:
    generators: tuple[GeneratorConfig, ...]
    guidance_scales: tuple[float, ...] = (7.5,)
    # grid: every (generator, guidance scale, sample) image; sample: per (generator, sample) one guidance
    # scale drawn deterministically from the set (VisionPrefer's recipe).
    cfg_mode: Literal["grid", "sample"] = "grid"
    images_per_prompt: int = 1  # samples per generator (and per guidance scale in grid mode)
    batch_size: int = 4  # images per pipeline call; part of the chunk layout
    seed: int = 0
    image_format: Literal["png", "jpeg", "webp"] = "png"
    image_quality: int = 95  # JPEG/WebP only
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    vae_slicing: bool = False

    def __post_init__(self) -> None:
        if not self.generators:
            raise ConfigError("generate.generators: at least one generator is required")
        if not self.guidance_scales:
            raise ConfigError("generate.guidance_scales: must not be empty")
        for g in self.guidance_scales:
            if g < 0:
                raise ConfigError(f"generate.guidance_scales: {g} is negative")
        _positive("generate.images_per_prompt", self.images_per_prompt)
        _positive("generate.batch_size", self.batch_size)
        if not 1 <= self.image_quality <= 100:
            raise ConfigError(f"generate.image_quality: {self.image_quality} is not in 1..100")
        names = [generator_label(g) for g in self.generators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"generate.generators: duplicate generator name(s) {dupes}; set `name` to tell them apart"
            )


ASPECTS = ("prompt_following", "fidelity", "aesthetic", "harmlessness")
METRICS = ("vqa", "clip", "aesthetic", "cq", "pickscore", "hpsv2")


@dataclass(frozen=True)
class BatchAPIConfig:
    """The OpenAI Batch API: about half the price, answers within the completion window."""

    max_requests_per_file: int = 50_000  # the API's limit per input file
    max_bytes_per_file: int = 200_000_000  # the API's 200 MB limit (base64 images count)
    poll_interval_s: float = 30.0
    max_wait_s: float | None = None  # stop polling after this long; the next run resumes polling
    completion_window: str = "24h"
    # max_cost_usd holds, for each request in flight, its predicted cost (what `estimate` predicts; observed
    # tokens once the run has some) times this margin, never more than its worst case (all max_tokens).
    budget_margin: float = 1.15

    def __post_init__(self) -> None:
        _positive("annotate.judge.batch.max_requests_per_file", self.max_requests_per_file)
        _positive("annotate.judge.batch.max_bytes_per_file", self.max_bytes_per_file)
        if not 1.0 <= self.budget_margin <= 10.0:
            raise ConfigError(
                f"annotate.judge.batch.budget_margin: {self.budget_margin} is outside 1..10 (1.15 holds 15% more "
                "than the predicted cost of each request in flight)"
            )


def _judge_llm() -> LLMConfig:
    return LLMConfig(model="gpt-4o-2024-08-06", max_tokens=2000)


@dataclass(frozen=True)
class CalibrationConfig:
    """The calibration gate of a feedback backend (``annotate.judge.calibration``,
    ``annotate.metrics.calibration``): before the main annotation, score ``pairs`` pairs of a human
    preference test set (a spec of ``visionprefer eval agreement``, read from a local copy at ``data``) as
    the build's images will be scored, and stop when the agreement is below ``min_accuracy``. The result is
    recorded in the run, ``status`` and the card. Its error messages name its keys from ``calibration.``:
    the loader puts the section in front."""

    testset: str = "pickapic_v1_test"
    data: str = ""  # a local copy in the test set's published layout (relative to the config file)
    pairs: int = 100
    min_accuracy: float = 0.5
    protocol: str | None = None  # default: the test set's own
    loader_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("calibration.pairs", self.pairs)
        if not self.data:
            raise ConfigError("calibration.data: the local copy of the test set is required")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ConfigError(f"calibration.min_accuracy: {self.min_accuracy} is outside 0..1")


@dataclass(frozen=True)
class LocalJudgeConfig:
    """The judge run in-process on a vision-language model (``annotate.judge.backend: local``), decoding
    under the judge's JSON schema (llguidance's token masks with transformers; vLLM's own structured
    output where vLLM is installed). Decoding is greedy, so a group shown the same way gets the same answer.
    Every setting here except ``batch_size`` and ``device`` enters the annotation key."""

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # any AutoModelForImageTextToText id or path; tiny-vlm offline
    revision: str | None = None
    engine: Literal["auto", "transformers", "vllm"] = "auto"  # auto: vLLM when importable, else transformers
    device: str = "auto"  # auto: this rank's CUDA device when there is one, else the CPU
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: bfloat16 on CUDA, else float32
    batch_size: int = 8  # groups decoded together
    max_new_tokens: int = 4096
    # Explanations are capped in the grammar (the API schema cannot say so portably; this engine can), so a
    # weak model cannot run a string on to max_new_tokens: ~60 words is more than the guide asks for.
    max_explanation_chars: int = 400
    groups_per_hour: float = 1800.0  # for `estimate` before any group is judged: GPU throughput assumed

    def __post_init__(self) -> None:
        _positive("annotate.judge.local.batch_size", self.batch_size)
        _positive("annotate.judge.local.max_new_tokens", self.max_new_tokens)
        _positive("annotate.judge.local.max_explanation_chars", self.max_explanation_chars)
        if self.groups_per_hour <= 0:
            raise ConfigError("annotate.judge.local.groups_per_hour: must be positive")


@dataclass(frozen=True)
class JudgeConfig:
    """The VLM judge: scores each image of a prompt's group on the four aspects, with explanations."""

    llm: LLMConfig = field(default_factory=_judge_llm)
    backend: Literal["api", "local"] = "api"  # api: `llm` (OpenAI or a server); local: `local`, in-process
    local: LocalJudgeConfig = field(default_factory=LocalJudgeConfig)
    mode: Literal["online", "batch"] = "online"  # batch: the OpenAI Batch API
    group_size: int | None = None  # images judged together; None: all images of a prompt
    both_orders: bool = False  # judge each group also in reversed order and average (position bias)
    score_min: int = 1
    score_max: int = 5  # VisionPrefer's 1-5 scale
    image_format: Literal["jpeg", "png"] = "jpeg"
    image_max_side: int = 512
    image_quality: int = 90
    detail: Literal["low", "high", "auto"] = "auto"
    guides: str | None = None  # folder with the rubric files; default: the packaged annotation_guides/
    batch: BatchAPIConfig = field(default_factory=BatchAPIConfig)
    calibration: CalibrationConfig | None = None  # the gate before the main annotation; None: off

    def __post_init__(self) -> None:
        _positive("annotate.judge.group_size", self.group_size, allow_none=True)
        if self.score_max <= self.score_min:
            raise ConfigError(
                f"annotate.judge.score_max: {self.score_max} must be above score_min {self.score_min}"
            )
        _positive("annotate.judge.image_max_side", self.image_max_side)
        if self.backend == "local" and self.mode == "batch":
            raise ConfigError(
                "annotate.judge.mode: batch is the OpenAI Batch API; the local backend runs online"
            )


@dataclass(frozen=True)
class MetricsConfig:
    """AGFSync-style metric feedback: VQA over generated questions, CLIP score and LAION aesthetic score."""

    questions: Literal["template", "llm"] = "template"  # template: offline, from the prompt's nouns/numbers
    question_llm: LLMConfig = field(default_factory=LLMConfig)
    vqa_backend: Literal["blip", "vlm"] = "blip"
    vqa_model: str = "Salesforce/blip-vqa-base"
    vqa_llm: LLMConfig | None = None  # vqa_backend vlm: the VLM endpoint
    clip_model: str = "openai/clip-vit-large-patch14"
    aesthetic_model: str = "laion-aesthetic-v2"  # the MLP head; tiny-aesthetic in tests
    aesthetic_clip_model: str = "openai/clip-vit-large-patch14"  # the CLIP the head was trained on
    cq_model: str | None = None  # e.g. hustvl/yolos-tiny: adds the CQ count/category score; None: off
    cq_threshold: float = 0.9
    # Reward models as metrics (None: off): PickScore (yuvalkirstain/PickScore_v1; logit_scale x cosine)
    # and HPS v2 / v2.1 (100 x cosine, as its benchmark reports it), e.g. to label pairs by a reward model.
    pickscore_model: str | None = None
    pickscore_processor: str | None = None  # default: laion/CLIP-ViT-H-14-laion2B-s32B-b79K's processor
    hpsv2_version: Literal["v2.0", "v2.1"] | None = None
    hpsv2_checkpoint: str | None = (
        None  # a local .pt; default: the version's file from the Hub repo xswu/HPSv2
    )
    # total = sum of weight x metric; metrics are vqa in [0, 1], clip = 100 x cosine, aesthetic on the AVA ~1-10
    # scale, so these defaults put the three on comparable ranges. (AGFSync's released build_dataset.py uses
    # 0.85 x CLIP + 0.15 x aesthetic with VILA's 0-100 aesthetic and no VQA; on these scales that is
    # {clip: 0.85, aesthetic: 1.5, vqa: 0}.)
    weights: dict[str, float] = field(default_factory=lambda: {"vqa": 1.0, "clip": 0.01, "aesthetic": 0.1})
    batch_size: int = 16
    device: str = "auto"
    # The gate before the main annotation (None: off): the weighted total on pairs of a human test set.
    calibration: CalibrationConfig | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(METRICS))
        if unknown:
            raise ConfigError(
                f"annotate.metrics.weights: unknown metric(s) {unknown}; valid: {', '.join(METRICS)}"
            )


@dataclass(frozen=True)
class AnnotateConfig:
    backend: Literal["none", "judge", "metrics"] = "none"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # overall = weighted mean of the aspect scores (judge backend); equal weights by default
    aspect_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ASPECTS, 1.0))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.aspect_weights) - set(ASPECTS))
        if unknown:
            raise ConfigError(
                f"annotate.aspect_weights: unknown aspect(s) {unknown}; valid: {', '.join(ASPECTS)}"
            )


@dataclass(frozen=True)
class PairsConfig:
    # all: every unordered pair of a prompt's images, per aspect and overall (ties kept as 0.5);
    # best_worst: AGFSync's one pair per prompt, best vs worst by the total.
    mode: Literal["all", "best_worst"] = "all"
    tie_tolerance: float = 0.0  # |score_0 - score_1| <= this is a tie


@dataclass(frozen=True)
class PublishConfig:
    """The Hugging Face dataset folder written into ``<run>/<folder>`` by the publish stage."""

    folder: str = "dataset"
    pretty_name: str | None = None
    description: str | None = None  # a paragraph for the card; a default one describes the build
    license: str = "other"  # the images inherit their generators' licences (listed in the card)
    rows_per_shard: int = 500
    dpo_aspect: str = "overall"  # which preferences the DPO export carries
    dpo_image_format: Literal["original", "jpeg"] = (
        "original"  # jpeg: re-encode at quality 95 like Pick-a-Pic
    )
    # The `pairs` config embeds both images of every pair (one row per pair and aspect: with four images a
    # prompt and five aspects, each image is stored ten times). false leaves image_0/image_1 null there:
    # the images stay in the `images` config (join on image_id_0/1) and in the DPO export.
    pair_images: bool = True
    # Splits by prompt, the same in every config: a prompt's split is a function of its key and `split_seed`
    # only (a digest compared with these fractions), so adding prompts never moves an existing one.
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 0
    # Extra exports: `agfsync` adds the config `agfsync` (AGFSync's released DPO format: caption, good_jpg,
    # bad_jpg as images).
    formats: tuple[Literal["agfsync"], ...] = ()
    # The card's `license_name` / `license_link` (the Hub asks for both with `license: other`). Unset with
    # `other`: `generator-licenses` and the LICENSE.md written into the folder (the generators' licences).
    license_name: str | None = None
    license_link: str | None = None

    def __post_init__(self) -> None:
        _positive("publish.rows_per_shard", self.rows_per_shard)
        for key in ("validation_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"publish.{key}: {value!r} must be at least 0 and below 1")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                "publish.validation_fraction + publish.test_fraction must leave prompts for train (sum < 1)"
            )
        if "/" in self.folder or self.folder in ("", ".", ".."):
            raise ConfigError(
                f"publish.folder: {self.folder!r} must be a plain folder name inside the run directory"
            )


@dataclass(frozen=True)
class EstimateConfig:
    """Throughput assumptions for `visionprefer estimate` (GPU-hours)."""

    images_per_gpu_hour: float = 1800.0  # default: ~2 s per image on one data-centre GPU
    per_generator: dict[str, float] = field(default_factory=dict)  # generator name -> images per GPU-hour


@dataclass(frozen=True)
class BuildConfig:
    run_dir: str
    prompts: PromptsConfig
    generate: GenerateConfig
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    prices: dict[str, PriceConfig] = field(default_factory=dict)  # model -> price; adds to the built-in table
    # Where the config file lives; prompt-source paths are resolved against it. Not a YAML key.
    base_dir: str = field(default=".", metadata={"internal": True})

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, with source paths made absolute (the run-directory snapshot)."""
        data = _plain(self)
        data.pop("base_dir", None)
        for src in data["prompts"]["sources"]:
            if src["path"] is not None:
                src["path"] = str(self.resolve_path(src["path"]).resolve())
            elif src["hf_dataset"] is not None and (
                Path(src["hf_dataset"]).expanduser().exists()
                or Path(self.base_dir, src["hf_dataset"]).exists()
            ):
                src["hf_dataset"] = str(self.resolve_path(src["hf_dataset"]).resolve())
        metrics = data["annotate"]["metrics"]
        if metrics["hpsv2_checkpoint"] is not None:
            metrics["hpsv2_checkpoint"] = str(self.resolve_path(metrics["hpsv2_checkpoint"]).resolve())
        if data["annotate"]["judge"]["guides"] is not None:
            data["annotate"]["judge"]["guides"] = str(
                self.resolve_path(data["annotate"]["judge"]["guides"]).resolve()
            )
        polish = data["prompts"]["polish"]
        if polish["template"] is not None:
            polish["template"] = str(self.resolve_path(polish["template"]).resolve())
        return data

    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())

    def portable_fingerprint(self) -> str:
        """The fingerprint the dataset card shows: the config without ``run_dir``, with every file path
        reduced to its file name, so that the same build written to another folder (or from a config in
        another place) publishes the same card."""
        data = self.to_dict()
        data.pop("run_dir", None)
        for src in data["prompts"]["sources"]:
            for key in ("path", "hf_dataset"):
                if src[key] is not None and Path(src[key]).is_absolute():
                    src[key] = Path(src[key]).name
        metrics = data["annotate"]["metrics"]
        if metrics["hpsv2_checkpoint"] is not None:
            metrics["hpsv2_checkpoint"] = Path(metrics["hpsv2_checkpoint"]).name
        for section, key in ((data["annotate"]["judge"], "guides"), (data["prompts"]["polish"], "template")):
            if section[key] is not None:
                section[key] = Path(section[key]).name
        for g in data["generate"]["generators"]:
            if g.get("model"):
                from .publish.schema import public_model_id

                g["model"] = public_model_id(g["model"])
        return fingerprint(data)


def generator_label(g: GeneratorConfig) -> str:
    return g.name or g.preset or "custom"


# --------------------------------------------------------------------------------------------- loading
def load_config(path: str | Path, *, run_dir: str | None = None) -> BuildConfig:
    """Read a YAML build config; ``run_dir`` overrides the file's (the CLI's ``--out``)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, expected a YAML config file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: YAML syntax error{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{p}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    if run_dir is not None:
        data = {**data, "run_dir": run_dir}
    return config_from_dict(data, base_dir=str(p.resolve().parent), origin=str(p))


def config_from_dict(data: dict[str, Any], *, base_dir: str = ".", origin: str = "config") -> BuildConfig:
    data = {k: v for k, v in data.items() if k != "base_dir"}
    try:
        cfg = _build(BuildConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    return dataclasses.replace(cfg, base_dir=base_dir)


def fingerprint(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- internals
def _positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as e:
                errors.append(e)
        raise (
            errors[0]
            if len(errors) == 1
            else ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        )
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp)
        return {_convert(key_tp, k, where): _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in this module, not user input


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            if isinstance(key, str) and any(w in key.lower() for w in SECRET_WORDS):
                raise ConfigError(
                    f"{prefix}{key}: secrets do not belong in a config file; put the value in an environment "
                    f"variable and name it with `{key}_env`"
                )
            raise ConfigError(f"{prefix}{key}: unknown key; valid keys here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{prefix}{name}")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(default) and type(kwargs[name]) is type(default):
                # A partly given section keeps the field's own defaults for the rest: the judge's `llm`
                # stays a GPT-4o snapshot with room for long answers when only `base_url` is given, say.
                kept = {
                    k.name: getattr(default, k.name)
                    for k in dataclasses.fields(default)
                    if k.name not in data[name] and not k.metadata.get("internal")
                }
                if kept:
                    kwargs[name] = dataclasses.replace(kwargs[name], **kept)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        # A section used in several places names its keys from its own name: give the whole path.
        parent, _, leaf = where.rpartition(".")
        if parent and str(e).startswith(f"{leaf}."):
            raise ConfigError(f"{parent}.{e}") from None
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None
