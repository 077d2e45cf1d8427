"""Images for an evaluator: generated from a diffusers model into the benchmark's layout, or read from a folder
that already has that layout. Either way the evaluator sees the same thing: relative path -> image file.

Generation reuses the build's generator code (presets, revisions, CPU-generator seeds) and resumes: files
that exist are not made again. Reading checks every file: a missing, zero-byte or undecodable image is a
counted skip with its reason, never a crash halfway through a benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..keys import derive_seed


@dataclass
class ImageSet:
    """Relative path -> absolute file for the usable images, and the skipped ones by reason."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    checked: dict[str, Path] = field(default_factory=dict)  # every relative path -> the file looked at

    def name(self, rel: str) -> str:
        """The image's file name as found on disk, relative to the root (``00000.jpg`` where the layout
        names ``00000.png``); the layout's name for a missing image."""
        path = self.checked.get(rel)
        if path is None:
            return rel
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def skip_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.skipped.values():
            key = reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def check_image(path: Path) -> str | None:
    """None if ``path`` is a readable image, else the reason it is not."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "zero-byte file"
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"corrupt image: {' '.join(str(e).split())[:100]}"
    return None


def read_image_dir(root: str | Path, relpaths: Sequence[str]) -> ImageSet:
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--images: {root} is not a folder")
    out = ImageSet(root=root)
    for rel in relpaths:
        path = root / rel
        if not path.exists():
            # Accept the other common extension (benchmark layouts name .jpg; PNG folders are common too).
            for alt in (path.with_suffix(".png"), path.with_suffix(".jpg"), path.with_suffix(".jpeg")):
                if alt.exists():
                    path = alt
                    break
        out.checked[rel] = path
        problem = check_image(path)
        if problem:
            out.skipped[rel] = problem
        else:
            out.files[rel] = path
    return out


def model_spec(
    model: str,
    *,
    steps: int | None = None,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    revision: str | None = None,
    dtype: str = "auto",
):
    """A generator spec for ``--model``: a preset name (sd15, sdxl, tiny-sd15, ...) or a diffusers id/path."""
    from ..config import GenerateConfig, GeneratorConfig
    from ..generate.plan import resolve_generator
    from ..generate.presets import PRESETS

    g = GeneratorConfig(
        preset=model if model in PRESETS else None,
        model=None if model in PRESETS else model,
        steps=steps,
        height=height,
        width=width,
        revision=revision,
        dtype=dtype,  # type: ignore[arg-type]
        guidance_scales=(guidance_scale,),
    )
    return resolve_generator(g, GenerateConfig(generators=(g,)))


def generate_images(
    model: str,
    items: Sequence[tuple[str, str]],
    out_dir: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 4,
    steps: int | None = None,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    device: str = "auto",
    revision: str | None = None,
    quality: int = 95,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate ``(relative path, prompt)`` items into ``out_dir`` (format from the suffix), skipping files
    that exist. Returns the model description a leaderboard submission records."""
    from ..generate.diffusers_backend import DiffusersTextToImage
    from ..generate.stage import encode_image
    from ..progress import progress_bar
    from ..rundir import atomic_write_bytes

    out = Path(out_dir)
    spec = model_spec(
        model, steps=steps, guidance_scale=guidance_scale, height=height, width=width, revision=revision
    )
    todo = [(rel, prompt) for rel, prompt in items if not (out / rel).exists()]
    seeds = {rel: derive_seed(seed, rel, 0) for rel, _ in items}
    meta: dict[str, Any] = {
        "id": spec.model_id,
        "revision": spec.revision,
        "steps": spec.steps,
        "guidance_scale": guidance_scale,
        "seed_rule": f"derive_seed({seed}, relative path, 0)",
    }
    generator = None
    with progress_bar(total=len(todo), desc="generate", unit="img", enabled=progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            if generator is None:
                generator = DiffusersTextToImage(spec, device=device)
            images = generator(
                [p for _, p in batch], guidance_scale=guidance_scale, seeds=[seeds[r] for r, _ in batch]
            )
            for (rel, _), image in zip(batch, images, strict=True):
                suffix = Path(rel).suffix.lower()
                fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(suffix, "png")
                atomic_write_bytes(out / rel, encode_image(image, fmt, quality))
            bar.update(len(batch))
    if generator is None:  # everything existed: describe the model from its config files, without weights
        meta.update(describe_pipeline(spec, device))
    else:
        h, w = generator.default_size
        meta.update(
            pipeline=generator.pipeline_name,
            scheduler=generator.scheduler_name,
            dtype=generator.dtype_name,
            height=h,
            width=w,
        )
        generator.close()
    return meta


def describe_pipeline(spec: Any, device: str = "auto") -> dict[str, Any]:
    """Pipeline and scheduler class, dtype and size of a generator, read from its config files only."""
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    from ..generate.diffusers_backend import resolve_device, resolve_dtype

    path: Any = spec.model_id
    if spec.tiny:
        from ..models.tiny import tiny_model_path

        path = tiny_model_path(spec.model_id)
    index = DiffusionPipeline.load_config(path, revision=spec.revision)
    scheduler = spec.scheduler or (index.get("scheduler") or [None, None])[1]
    size = spec.height and spec.width
    if not size:
        unet = UNet2DConditionModel.load_config(path, subfolder="unet", revision=spec.revision)
        side = int(unet["sample_size"]) * 8
    dtype = str(resolve_dtype(spec.dtype, resolve_device(device))).removeprefix("torch.")
    return {
        "pipeline": index["_class_name"],
        "scheduler": scheduler,
        "dtype": dtype,
        "height": spec.height or side,
        "width": spec.width or side,
    }
