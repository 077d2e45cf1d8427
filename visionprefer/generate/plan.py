"""The generation plan: which images a build wants, their keys and seeds, and the fixed chunks they are
made in.

Batches are **fixed chunks of the global plan**: per generator and guidance scale, the images sorted by key
and cut every ``batch_size``. A resumed run, or another rank, therefore makes exactly the same pipeline
calls, and identical calls give identical pixels (the same image in a differently composed batch can
differ by one level in a pixel). A chunk with any image missing is generated again whole.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config import GenerateConfig, GeneratorConfig, generator_label
from ..keys import derive_seed, digest, generation_text, image_key
from .presets import get_preset


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator with every default filled in from its preset."""

    name: str
    preset: str | None
    model_id: str
    revision: str | None
    steps: int
    height: int | None  # None: the pipeline's default (custom models)
    width: int | None
    scheduler: str | None  # None: the one the model ships
    dtype: str  # as configured ("auto" resolves per device at load time)
    guidance_scales: tuple[float, ...]
    negative_prompt: str | None
    embedding_noise: float | None = None
    tiny: bool = False

    def fingerprint(self) -> str:
        """Digest of every setting that changes pixels; it enters each image key."""
        return digest(
            "generator",
            self.model_id,
            self.revision,
            self.steps,
            self.height,
            self.width,
            self.scheduler,
            self.dtype,
            self.negative_prompt,
            *([self.embedding_noise] if self.embedding_noise is not None else []),
            length=16,
        )

    @property
    def generator_column(self) -> str:
        """The dataset's ``generator`` value: the preset name, or ``custom``."""
        return self.preset if self.preset else "custom"


@dataclass(frozen=True)
class ImageTask:
    image_id: str
    prompt_id: str
    prompt: str
    generator: str
    guidance_scale: float
    sample_index: int
    seed: int


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the global plan: decides the rank that makes it
    generator: str
    guidance_scale: float
    tasks: tuple[ImageTask, ...]

    @property
    def image_ids(self) -> list[str]:
        return [t.image_id for t in self.tasks]


def resolve_generator(g: GeneratorConfig, gc: GenerateConfig) -> GeneratorSpec:
    preset = get_preset(g.preset) if g.preset else None
    size = preset.size if preset else None
    return GeneratorSpec(
        name=generator_label(g),
        preset=g.preset,
        model_id=g.model or preset.model_id,  # type: ignore[union-attr]
        revision=g.revision
        if g.revision is not None
        else (preset.revision if preset and not g.model else None),
        steps=g.steps or (preset.steps if preset else 50),
        height=g.height or size,
        width=g.width or size,
        scheduler=g.scheduler,
        dtype=g.dtype,
        guidance_scales=tuple(g.guidance_scales or gc.guidance_scales),
        negative_prompt=g.negative_prompt,
        embedding_noise=g.embedding_noise,
        tiny=bool(preset and preset.tiny and not g.model),
    )


def resolve_generators(gc: GenerateConfig) -> list[GeneratorSpec]:
    return [resolve_generator(g, gc) for g in gc.generators]


def _grid_scales(spec: GeneratorSpec) -> list[float]:
    return [float(s) for s in sorted(set(spec.guidance_scales))]


def prompt_tasks(
    prompt: dict[str, Any], spec: GeneratorSpec, fingerprint: str, gc: GenerateConfig
) -> Iterator[ImageTask]:
    """The planned images of one prompt for one generator (``fingerprint`` is ``spec.fingerprint()``, passed
    in because it is the same for every prompt): the one place where keys, scales and seeds are derived,
    shared by :func:`plan_images` and :func:`tasks_by_prompt`."""
    grid = _grid_scales(spec)
    text = generation_text(prompt)
    for i in range(gc.images_per_prompt):
        seed = derive_seed(gc.seed, prompt["prompt_id"], i)
        if gc.cfg_mode == "grid":
            scales: list[float] = grid
        else:  # one scale per (prompt, generator, sample), drawn from the sorted set by key (see keys.py)
            rng = random.Random(digest("cfg-choice", gc.seed, prompt["prompt_id"], fingerprint, i, grid))
            scales = [rng.choice(grid)]
        for scale in scales:
            yield ImageTask(
                image_id=image_key(prompt["prompt_id"], fingerprint, scale, i, seed, text),
                prompt_id=prompt["prompt_id"],
                prompt=prompt["prompt"],
                generator=spec.name,
                guidance_scale=float(scale),
                sample_index=i,
                seed=seed,
            )


def tasks_by_prompt(
    prompts: Iterable[dict[str, Any]], gc: GenerateConfig
) -> Iterator[tuple[dict[str, Any], list[ImageTask]]]:
    """Each prompt with its planned images for every generator (in config order): the images of
    :func:`plan_images`, one prompt at a time, for readers that need keys and counts but not the chunks
    (the chunks need the whole plan in memory; this holds one prompt's images)."""
    specs = [(spec, spec.fingerprint()) for spec in resolve_generators(gc)]
    for p in prompts:
        yield p, [task for spec, fp in specs for task in prompt_tasks(p, spec, fp, gc)]


def plan_images(prompts: Iterable[dict[str, Any]], gc: GenerateConfig) -> list[Chunk]:
    """Every planned image, grouped into the fixed chunks in which they are generated."""
    prompts = list(prompts)
    chunks: list[Chunk] = []
    for spec in resolve_generators(gc):
        fp = spec.fingerprint()
        groups: dict[float, list[ImageTask]] = {s: [] for s in _grid_scales(spec)}
        for p in prompts:
            for task in prompt_tasks(p, spec, fp, gc):
                groups[task.guidance_scale].append(task)
        for scale, tasks in groups.items():
            tasks.sort(key=lambda t: t.image_id)
            for start in range(0, len(tasks), gc.batch_size):
                chunks.append(
                    Chunk(len(chunks), spec.name, scale, tuple(tasks[start : start + gc.batch_size]))
                )
    return chunks
