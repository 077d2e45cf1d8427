"""Item keys: what resume, invalidation and ``status`` count.

A key is a short hex digest of the settings that determine the item, so changing a setting changes exactly
the keys it enters. Keys never depend on file bytes, timestamps, paths or process layout.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_LENGTH = 20  # hex characters: 80 bits, no collision in any realistic dataset


def digest(kind: str, *parts: Any, length: int = KEY_LENGTH) -> str:
    blob = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def prompt_key(source: str, original: str) -> str:
    """A prompt's key: its source name and its original (uncleaned) text."""
    return digest("prompt", source, original)


def image_key(prompt_id: str, generator_fingerprint: str, guidance_scale: float, sample_index: int) -> str:
    """An image's key: prompt key, the generator's pixel-relevant settings, guidance scale, sample index."""
    return digest("image", prompt_id, generator_fingerprint, float(guidance_scale), int(sample_index))


def derive_seed(global_seed: int, prompt_id: str, sample_index: int) -> int:
    """The CPU generator seed of an image.

    It derives from the image key's prompt and sample-index parts (and the build's seed) but not from the
    generator or the guidance scale: the images of one prompt and sample index share their initial noise
    across guidance scales (and across models of the same latent shape), so comparisons between them are
    paired. A value below 2**31 keeps it usable by every RNG API.
    """
    return int(digest("seed", int(global_seed), prompt_id, int(sample_index), length=16), 16) % (2**31)
