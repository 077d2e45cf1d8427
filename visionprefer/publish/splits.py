"""Train / validation / test by prompt, stable under growth.

A prompt's split is a function of its key and ``publish.split_seed`` alone: the digest
``keys.digest("split", seed, prompt_id)`` read as a number ``u`` in [0, 1) puts it in ``validation``
when ``u < validation_fraction``, in ``test`` when ``u < validation_fraction + test_fraction``, and in
``train`` otherwise. No prompt's split depends on which other prompts exist, so adding prompts (or
removing some) never moves an existing prompt to another split, and every config (prompts, images, pairs,
the DPO export) puts a prompt's rows in the same split. The fractions are expected shares, not exact sizes.

The DPO export's ``validation_unique`` / ``test_unique`` follow Pick-a-Pic: exactly one example per prompt of
``validation`` / ``test``. Pick-a-Pic samples it at random; here it is the pair of the prompt with the
smallest ``keys.digest("unique", seed, pair_id)``, so the choice is reproducible and does not change when
other prompts are added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..keys import KEY_LENGTH, digest

if TYPE_CHECKING:
    from ..config import BuildConfig

_SCALE = float(16**KEY_LENGTH)


def split_of(prompt_id: str, validation: float, test: float, seed: int = 0) -> str:
    """The split of one prompt (``train``, ``validation`` or ``test``)."""
    u = int(digest("split", seed, prompt_id), 16) / _SCALE
    if u < validation:
        return "validation"
    if u < validation + test:
        return "test"
    return "train"


def splitter(config: BuildConfig):
    """``split_of`` with the build's fractions and seed: ``prompt_id -> split``."""
    pc = config.publish
    cache: dict[str, str] = {}

    def split(prompt_id: str) -> str:
        s = cache.get(prompt_id)
        if s is None:
            s = cache[prompt_id] = split_of(
                prompt_id, pc.validation_fraction, pc.test_fraction, pc.split_seed
            )
        return s

    return split


def unique_rank(pair_id: str, seed: int = 0) -> str:
    """Sort key choosing a prompt's one example in the ``*_unique`` splits (the smallest wins)."""
    return digest("unique", seed, pair_id)
