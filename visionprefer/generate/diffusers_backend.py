"""Text-to-image through a diffusers pipeline loaded with ``from_pretrained``.

One object per model; it loads once and serves every chunk of that model. On CUDA it runs in float16 (the
SDXL VAE upcasts itself through its ``force_upcast`` config) with PyTorch's scaled-dot-product attention,
diffusers' default. Initial noise comes from per-image CPU ``torch.Generator`` objects, so the same seed
gives the same noise on any device.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..errors import ConfigError, ModelLoadError, first_line
from .plan import GeneratorSpec

log = logging.getLogger(__name__)


class TextToImage(Protocol):
    """A generator: prompts, one guidance scale and one seed per prompt in; one PIL image per prompt out."""

    pipeline_name: str
    scheduler_name: str
    dtype_name: str

    def __call__(
        self,
        prompts: list[str],
        *,
        guidance_scale: float,
        seeds: list[int],
        sample_indices: list[int] | None = None,
    ) -> list[Any]: ...


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            from ..dist import process_info

            return f"cuda:{process_info().local_rank}"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"generate.device: {device!r} requested but CUDA is not available here")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class DiffusersTextToImage:
    def __init__(self, spec: GeneratorSpec, *, device: str = "auto", vae_slicing: bool = False):
        import diffusers
        import torch
        import transformers
        from diffusers import DiffusionPipeline

        # Our own bar shows generation progress; the libraries' loading bars would only add noise.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

        self.spec = spec
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(spec.dtype, self.device)
        self.dtype_name = str(self.torch_dtype).removeprefix("torch.")
        path: Any = spec.model_id
        if spec.tiny:
            from ..models.tiny import tiny_model_path

            path = tiny_model_path(spec.model_id)
        kwargs: dict[str, Any] = {"dtype": self.torch_dtype}
        if spec.revision:
            kwargs["revision"] = spec.revision
        try:
            index = DiffusionPipeline.load_config(path, revision=spec.revision)
            if "safety_checker" in index:
                # Prompts are safety-filtered upstream and harmlessness is judged; a checker that blacks out
                # images would hide exactly what the judge must see.
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            pipe = DiffusionPipeline.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as e:
            first = first_line(e)
            raise ModelLoadError(
                f"cannot load generator {spec.name!r} from {spec.model_id}"
                f"{'@' + spec.revision if spec.revision else ''}: {first}"
            ) from None
        if spec.scheduler:
            cls = getattr(diffusers, spec.scheduler, None)
            if cls is None or not hasattr(cls, "from_config") or "Scheduler" not in spec.scheduler:
                raise ConfigError(
                    f"generate.generators[].scheduler: {spec.scheduler!r} is not a diffusers scheduler"
                )
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
        if vae_slicing and hasattr(pipe, "vae"):
            pipe.vae.enable_slicing()
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.pipeline_name = type(pipe).__name__
        self.scheduler_name = type(pipe.scheduler).__name__
        self._torch = torch

    @property
    def default_size(self) -> tuple[int, int]:
        """(height, width) the pipeline uses when none is configured."""
        h = self.spec.height or self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        w = self.spec.width or self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return int(h), int(w)

    def __call__(
        self,
        prompts: list[str],
        *,
        guidance_scale: float,
        seeds: list[int],
        sample_indices: list[int] | None = None,
    ) -> list[Any]:
        torch = self._torch
        height, width = self.default_size
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        negative = [self.spec.negative_prompt] * len(prompts) if self.spec.negative_prompt else None
        kwargs: dict[str, Any] = {"prompt": prompts, "negative_prompt": negative}
        with torch.inference_mode():
            if self.spec.embedding_noise is not None:
                kwargs = self._noisy_embeddings(prompts, negative, guidance_scale, seeds, sample_indices)
            out = self.pipe(
                **kwargs,
                num_inference_steps=self.spec.steps,
                guidance_scale=guidance_scale,
                height=height,
                width=width,
                generator=generators,
                output_type="pil",
            )
        return list(out.images)

    def _noisy_embeddings(
        self,
        prompts: list[str],
        negative: list[str] | None,
        guidance_scale: float,
        seeds: list[int],
        sample_indices: list[int] | None,
    ) -> dict[str, Any]:
        """AGFSync's candidates: the text embedding of samples 1..N-1 gets N(0, sigma^2) noise (sample 0 stays
        clean); the noise comes from a CPU generator seeded from the image's seed, so it is reproducible."""
        torch = self._torch
        sigma = float(self.spec.embedding_noise or 0.0)
        indices = sample_indices if sample_indices is not None else [0] * len(prompts)
        encoded = self.pipe.encode_prompt(
            prompt=prompts,
            device=self.pipe.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guidance_scale > 1.0,
            negative_prompt=negative,
        )
        names = ["prompt_embeds", "negative_prompt_embeds"]
        if len(encoded) == 4:  # SDXL: pooled embeddings too
            names += ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        kwargs = {name: value for name, value in zip(names, encoded, strict=True) if value is not None}
        for key in ("prompt_embeds", "pooled_prompt_embeds"):
            if key not in kwargs:
                continue
            embeds = kwargs[key].clone()
            for i, (seed, index) in enumerate(zip(seeds, indices, strict=True)):
                if index > 0:
                    g = torch.Generator("cpu").manual_seed((int(seed) * 2654435761 + 97) % 2**63)
                    noise = torch.randn(embeds[i].shape, generator=g, dtype=torch.float32)
                    embeds[i] += sigma * noise.to(embeds.device, embeds.dtype)
            kwargs[key] = embeds
        return kwargs

    def close(self) -> None:
        del self.pipe
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
