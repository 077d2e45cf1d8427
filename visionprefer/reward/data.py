"""Preference pairs for reward training: loading, checks, the validation split and the batch order.

``load_pairs`` reads ``datasets.load_dataset(path, "pairs")`` (a published dataset folder or a Hub id),
checks it before anything is trained (the columns and splits it needs, non-null images, labels in [0, 1]
that are not all ties) and keeps the pairs of one aspect. Validation is the dataset's validation split when
it has one, else a deterministic share of the train prompts: the prompts (``prompt_id``, else the text)
sorted by the SHA-256 of their key, the first ``ceil(share × prompts)`` held out. Checks read the Arrow
columns only; no image is decoded.

The batch order is a function of the global step alone (``GlobalOrder``): an endless stream of
permutations of the train pairs, one per epoch, each drawn from a generator seeded with (seed, epoch);
optimizer step ``s`` takes stream positions ``[s·B, (s+1)·B)``. It is cut into accumulation micro-batches
and each micro-batch into contiguous per-process shares, so one process with batch B and N processes with
the same B see the same pairs at the same step, and a resumed run continues exactly where the checkpoint
was taken.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, first_line

REQUIRED_COLUMNS = ("prompt", "image_0", "image_1", "label_0", "aspect")


@dataclass
class PairData:
    train: Any  # datasets.Dataset: prompt, image_0, image_1, label_0 of one aspect
    validation: Any | None
    validation_source: str  # "split 'validation'", "held-out 10% of the train prompts (3 prompts)" or "none"
    train_prompts: int
    validation_prompts: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation) if self.validation else 0}


def _column(ds, name: str) -> list:
    return ds.data.column(name).to_pylist() if ds._indices is None else list(ds.select_columns([name])[name])


def _check_split(ds, split: str, where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{where}: split {split!r} lacks the column(s) {', '.join(missing)} of the visionprefer pairs "
            f"layout (has: {', '.join(ds.column_names)})"
        )
    for col in ("image_0", "image_1"):
        nulls = ds.data.column(col).null_count if ds._indices is None else None
        if nulls:
            raise ConfigError(
                f"{where}: split {split!r} has {nulls} pairs without {col} (published with "
                "pair_images: false?); reward training needs the images in the pairs config"
            )


def _of_aspect(ds, aspect: str, split: str, where: str):
    aspects = _column(ds, "aspect")
    keep = [i for i, a in enumerate(aspects) if a == aspect]
    if not keep:
        found = sorted({str(a) for a in aspects})
        raise ConfigError(
            f"{where}: split {split!r} has no pairs of aspect {aspect!r} (aspects: {', '.join(found) or 'none'})"
        )
    all_labels = _column(ds, "label_0")
    labels = [all_labels[i] for i in keep]
    bad = [x for x in labels if x is None or not (0.0 <= float(x) <= 1.0)]
    if bad:
        raise ConfigError(f"{where}: split {split!r} has label_0 values outside [0, 1] (e.g. {bad[0]!r})")
    if all(float(x) == 0.5 for x in labels):
        raise ConfigError(
            f"{where}: all {len(labels)} pairs of aspect {aspect!r} in split {split!r} are ties "
            "(label_0 = 0.5): nothing to learn from"
        )
    columns = ["prompt", "image_0", "image_1", "label_0"] + (
        ["prompt_id"] if "prompt_id" in ds.column_names else []
    )
    out = ds.select_columns(columns)
    return out if len(keep) == len(aspects) else out.select(keep)


def _prompt_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def held_out_prompts(keys: list[str], share: float) -> set[str]:
    """The prompt keys held out for validation: ``ceil(share × n)`` of them (at least one when the share is
    positive and there are two prompts or more), the ones with the smallest SHA-256 digests."""
    unique = sorted(set(keys), key=_prompt_key)
    if share <= 0 or len(unique) < 2:
        return set()
    n = min(len(unique) - 1, max(1, math.ceil(share * len(unique))))
    return set(unique[:n])


def load_pairs(
    path: str, *, aspect: str, train_split: str, validation_split: str, validation_share: float
) -> PairData:
    import datasets

    where = f"dataset {path!r}"
    datasets.disable_progress_bars()  # library chatter ("Generating train split"), not ours to show
    try:
        dd = datasets.load_dataset(path, "pairs")
    except Exception as e:  # noqa: BLE001 - any loading problem is the user's input, reported on one line
        raise ConfigError(f"{where}: cannot load its 'pairs' config ({first_line(e)})") from None
    if train_split not in dd:
        raise ConfigError(f"{where}: no split {train_split!r} in config 'pairs' (splits: {', '.join(dd)})")
    train = dd[train_split]
    _check_split(train, train_split, where)
    train = _of_aspect(train, aspect, train_split, where)
    keys = _column(train, "prompt_id") if "prompt_id" in train.column_names else _column(train, "prompt")
    if validation_split in dd and validation_split != train_split:
        val = dd[validation_split]
        _check_split(val, validation_split, where)
        val = _of_aspect(val, aspect, validation_split, where)
        vkeys = _column(val, "prompt_id") if "prompt_id" in val.column_names else _column(val, "prompt")
        return PairData(train, val, f"split {validation_split!r}", len(set(keys)), len(set(vkeys)))
    held = held_out_prompts(keys, validation_share)
    if not held:
        return PairData(train, None, "none", len(set(keys)), 0)
    val_rows = [i for i, k in enumerate(keys) if k in held]
    train_rows = [i for i, k in enumerate(keys) if k not in held]
    train_part, val_part = train.select(train_rows), train.select(val_rows)
    if all(float(x) == 0.5 for x in _column(train_part, "label_0")):
        raise ConfigError(f"{where}: every pair left for training after the held-out prompts is a tie")
    source = f"held-out {validation_share:.0%} of the {train_split!r} prompts ({len(held)} prompts)"
    return PairData(train_part, val_part, source, len(set(keys)) - len(held), len(held))


class GlobalOrder:
    """The pairs of each optimizer step, as a function of the step (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            import torch

            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def step(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [self._perm(p // self.n)[p % self.n] for p in range(start, start + self.batch_size)]

    def share(self, step: int, micro: int, accumulation: int, rank: int, world: int) -> list[int]:
        """Rank ``rank``'s pairs of micro-batch ``micro`` of ``step``."""
        pairs = self.step(step)
        size = self.batch_size // accumulation
        chunk = pairs[micro * size : (micro + 1) * size]
        per = len(chunk) // world
        return chunk[rank * per : (rank + 1) * per]
