"""Item keys: what resume, invalidation and ``status`` count.

A key is a short hex digest of the settings that determine the item, so changing a setting changes exactly
the keys it enters. Keys never depend on file bytes, timestamps, paths or process layout.

The rule: **every input that changes an item's pixels, scores or labels enters that item's key, and nothing
else does.**

- a prompt: its source name and original text;
- an image: the prompt key, the text it is made from when that is not the cleaned original (a polished
  prompt: ``generation_text``; so changing the polishing remakes the images whose text changed), the
  generator's fingerprint (model, revision, steps, size, scheduler, dtype,
  negative prompt, embedding noise: ``GeneratorSpec.fingerprint``), the guidance scale, the sample index
  and the seed it is made with (``derive_seed``: the build seed, the prompt key, the sample index). A
  generator's display name is not in it (renaming a generator remakes nothing), nor is the order of
  ``guidance_scales``, nor ``batch_size``, the device or the process layout;
- in ``cfg_mode: sample``, the scale drawn for an image comes from the build seed, the prompt key, the
  generator's fingerprint, the sample index and the *sorted set* of scales (``generate.plan``), so it
  obeys the same rule;
- an annotation: the image key and the settings of its backend (the judge's model, guide version and
  grouping; the metric models).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

KEY_LENGTH = 20  # hex characters: 80 bits, no collision in any realistic dataset


def digest(kind: str, *parts: Any, length: int = KEY_LENGTH) -> str:
    blob = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def prompt_key(source: str, original: str) -> str:
    """A prompt's key: its source name and its original (uncleaned) text."""
    return digest("prompt", source, original)


_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """A prompt as generated when it is not polished: NFC, runs of whitespace as one space, stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def generation_text(prompt: dict[str, Any]) -> str | None:
    """What of a prompt record's text enters its images' keys: None when the images are made from the
    cleaned original (the prompt key already determines it), else the text they are made from (polished)."""
    text = prompt["prompt"]
    original = prompt.get("original")
    return None if original is None or text == clean_text(original) else text


def image_key(
    prompt_id: str,
    generator_fingerprint: str,
    guidance_scale: float,
    sample_index: int,
    seed: int,
    text: str | None = None,
) -> str:
    """An image's key: prompt key, the generator's pixel-relevant settings, guidance scale, sample index,
    the seed of its initial noise (``derive_seed``), so that changing the build seed remakes every image,
    and ``text`` (:func:`generation_text`) when the image is not made from the cleaned original."""
    parts: list[Any] = [prompt_id, generator_fingerprint, float(guidance_scale), int(sample_index), int(seed)]
    if text is not None:
        parts.append(text)
    return digest("image", *parts)


def derive_seed(global_seed: int, prompt_id: str, sample_index: int) -> int:
    """The CPU generator seed of an image.

    It derives from the image key's prompt and sample-index parts (and the build's seed) but not from the
    generator or the guidance scale: the images of one prompt and sample index share their initial noise
    across guidance scales (and across models of the same latent shape), so comparisons between them are
    paired. A value below 2**31 keeps it usable by every RNG API.
    """
    return int(digest("seed", int(global_seed), prompt_id, int(sample_index), length=16), 16) % (2**31)
