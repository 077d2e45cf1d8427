"""What produced an evaluator's numbers: one ``provenance`` block per summary, built here for every evaluator.

``summary_provenance(scorers, **extra)`` gives ``{"visionprefer": <version>, "scorers": {role: ...}, ...}``;
each scorer entry (:func:`scorer_provenance`) has the same fields whatever the scorer:

* ``scorer``: the scorer's name (``hpsv2``, ``clip``, ``aesthetic``, ``pickscore``, ``cq``, ``vqa``,
  ``similarity``) and ``version``: the definition it computes (``v2.0``/``v2.1`` for HPS, ``v2`` for the LAION
  aesthetic head, ``v1`` where there is only one);
* ``checkpoint``: ``id`` (as given: a Hub id, a tiny-model name or a path), ``path`` (the local folder or file
  loaded), ``revision`` (the Hub commit when loaded from the Hub cache, else null), ``files`` (each weight
  file loaded: ``name``, ``bytes``, ``sha256``) and ``sha256`` (the file's own hash for a single file; for
  several, the sha256 of their ``sha256sum``-style listing ``"<sha256>  <name>\\n"`` sorted by name);
* ``preprocessing``: the image transform (resize/crop sizes, resampling, normalisation ``mean``/``std`` and
  their ``normalize`` name: ``openai-clip``, ``imagenet``, ``0.5`` or ``custom``), and any text cleaning;
* ``tokenizer``: ``name`` (path or id), ``class`` and ``context_length`` (null for a scorer without text).

Weight files are hashed in 1 MiB chunks; a hash is cached per (path, size, mtime) for the life of the
process, so scoring the same checkpoint again does not read it again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HASHES: dict[tuple[str, int, int], str] = {}

# Weight files transformers loads, in its order of preference (an index names the shards).
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_NORMALISATIONS = {
    "openai-clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "0.5": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


# ------------------------------------------------------------------------------------------------ hashing
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, streamed in 1 MiB chunks and cached by (resolved path, size, mtime)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    key = (str(resolved), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(resolved, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def files_entry(files: list[Path]) -> dict[str, Any]:
    """``{"files": [{name, bytes, sha256}], "sha256": ...}`` for the weight files of one checkpoint."""
    rows = [
        {"name": f.name, "bytes": f.stat().st_size, "sha256": file_sha256(f)}
        for f in sorted(files, key=lambda p: p.name)
    ]
    if len(rows) == 1:
        combined: str | None = rows[0]["sha256"]
    elif rows:
        listing = "".join(f"{r['sha256']}  {r['name']}\n" for r in rows)
        combined = hashlib.sha256(listing.encode()).hexdigest()
    else:
        combined = None
    return {"files": rows, "sha256": combined}


# ------------------------------------------------------------------------------------------------ checkpoints
def _hub_revision(path: Path) -> str | None:
    """The commit of a Hub-cache snapshot folder (``.../snapshots/<commit>/...``), else None."""
    parts = path.parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def model_folder(model_id: str) -> Path | None:
    """The local folder a transformers ``from_pretrained(model_id)`` read: the folder itself, a tiny model's,
    or the Hub-cache snapshot of a Hub id (None if it is not in the cache)."""
    from ..models.tiny import is_tiny, tiny_model_path

    if is_tiny(model_id):
        return tiny_model_path(model_id)
    local = Path(model_id).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: nothing to describe
        return None
    return Path(found).parent if isinstance(found, str) else None


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads from a saved-model folder (sharded, safetensors first)."""
    import json

    for index in _WEIGHT_INDEXES:
        if (folder / index).is_file():
            shards = json.loads((folder / index).read_text(encoding="utf-8")).get("weight_map", {})
            return [folder / name for name in sorted(set(shards.values()))]
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    return []


def hf_checkpoint(model_id: str) -> dict[str, Any]:
    """``checkpoint`` of a transformers model loaded by ``from_pretrained(model_id)``."""
    folder = model_folder(model_id)
    files = weight_files(folder) if folder is not None else []
    return {
        "id": model_id,
        "path": None if folder is None else str(folder),
        "revision": None if folder is None else _hub_revision(folder),
        **files_entry(files),
    }


def file_checkpoint(model_id: str, path: str | os.PathLike) -> dict[str, Any]:
    """``checkpoint`` of a single weight file (an HPS ``.pt``, an aesthetic head)."""
    path = Path(path)
    return {"id": model_id, "path": str(path), "revision": _hub_revision(path), **files_entry([path])}


# ------------------------------------------------------------------------------------------------ preprocessing
def normalisation_name(mean: Any, std: Any) -> str:
    for name, (m, s) in _NORMALISATIONS.items():
        if _close(mean, m) and _close(std, s):
            return name
    return "custom"


def _close(a: Any, b: tuple[float, ...]) -> bool:
    try:
        values = [float(x) for x in a]
    except TypeError:
        return False
    return len(values) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(values, b, strict=True))


def _plain(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # transformers' SizeDict
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return getattr(value, "name", None) or str(value)  # PIL resampling enums -> "BICUBIC"


def image_processor_preprocessing(processor: Any, source: str | None = None) -> dict[str, Any]:
    """A transformers image processor as a transform description (sizes, crop, resampling, mean/std)."""
    image = getattr(processor, "image_processor", processor)
    out: dict[str, Any] = {"transform": type(image).__name__, "source": source}
    for key in ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_pad", "do_rescale"):
        if hasattr(image, key):
            value = getattr(image, key)
            if key == "resample" and isinstance(value, int) and not hasattr(value, "name"):
                from PIL import Image

                value = Image.Resampling(value).name
            if value is not None:
                out[key] = _plain(value)
    mean, std = getattr(image, "image_mean", None), getattr(image, "image_std", None)
    if getattr(image, "do_normalize", True) and mean is not None and std is not None:
        out.update(normalize=normalisation_name(mean, std), mean=_plain(mean), std=_plain(std))
    else:
        out["normalize"] = None
    return out


def tokenizer_entry(tokenizer: Any, context_length: int | None, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        "class": type(tokenizer).__name__,
        "context_length": None if context_length is None else int(context_length),
    }


# ------------------------------------------------------------------------------------------------ scorers
def scorer_provenance(scorer: Any) -> dict[str, Any]:
    """The provenance entry of one scorer or model (see the module docstring); an injected callable gets
    its name only (``checkpoint`` null)."""
    from ..models.text_embed import SentenceEmbedder
    from ..scorers.aesthetic import AestheticScorer
    from ..scorers.clip_score import CLIPScorer
    from ..scorers.cq import CQScorer
    from ..scorers.hpsv2 import HPSv2Scorer
    from ..scorers.vqa import BlipVQA

    if isinstance(scorer, HPSv2Scorer):
        from ..scorers.hpsv2 import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

        return {
            "scorer": "hpsv2",
            "version": scorer.version,
            "checkpoint": file_checkpoint(scorer.checkpoint, scorer.checkpoint_path),
            "preprocessing": {
                "transform": "resize-longest-side-then-zero-pad",
                "size": scorer.image_size,
                "resample": "bicubic",
                "antialias": scorer.antialias,
                "normalize": normalisation_name(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
                "mean": list(OPENAI_CLIP_MEAN),
                "std": list(OPENAI_CLIP_STD),
                "text_cleaning": scorer.text_cleaning,
            },
            "tokenizer": tokenizer_entry(scorer.tokenizer, scorer.context_length, scorer.tokenizer_source),
            "precision": "fp16-autocast" if scorer.autocast else "fp32",
        }
    if isinstance(scorer, AestheticScorer):
        clip = scorer_provenance(scorer.clip)
        return {
            "scorer": "aesthetic",
            "version": "v2",
            "checkpoint": file_checkpoint(scorer.head_name, scorer.weights_path),
            "preprocessing": {**clip["preprocessing"], "embedding": "L2-normalised CLIP image embedding"},
            "tokenizer": None,
            "clip": clip,
        }
    if isinstance(scorer, CLIPScorer):  # also PickScore
        return {
            "scorer": scorer.name,
            "version": "v1",
            "checkpoint": hf_checkpoint(scorer.model_id),
            "preprocessing": image_processor_preprocessing(
                scorer.processor, scorer.processor_id or scorer.model_id
            ),
            "tokenizer": tokenizer_entry(scorer.tokenizer, scorer.max_length),
        }
    if isinstance(scorer, CQScorer):
        return {
            "scorer": "cq",
            "version": "v1",
            "checkpoint": hf_checkpoint(scorer.model_id),
            "preprocessing": image_processor_preprocessing(scorer.processor, scorer.model_id),
            "tokenizer": None,
            "threshold": scorer.threshold,
        }
    if isinstance(scorer, BlipVQA):
        return {
            "scorer": "vqa",
            "version": "v1",
            "checkpoint": hf_checkpoint(scorer.model_id),
            "preprocessing": image_processor_preprocessing(scorer.processor, scorer.model_id),
            "tokenizer": tokenizer_entry(scorer.tokenizer, scorer.max_length),
            "decoding": {"greedy": True, "max_new_tokens": scorer.max_new_tokens},
        }
    if hasattr(scorer, "loaded_embedder"):  # evaluate.tifa.EmbeddingSimilarity (loads its model lazily)
        entry: dict[str, Any] = {
            "scorer": "similarity",
            "version": "v1",
            "checkpoint": hf_checkpoint(scorer.model_id),
            "preprocessing": {"pooling": "mean over the attention mask", "normalize": "L2"},
            "tokenizer": None,
            "loaded": scorer.loaded,
        }
        embedder = scorer.loaded_embedder
        if isinstance(embedder, SentenceEmbedder):
            entry["tokenizer"] = tokenizer_entry(embedder.tokenizer, embedder.max_length)
        return entry
    name = getattr(scorer, "model_id", None) or getattr(scorer, "__name__", None) or type(scorer).__name__
    return {
        "scorer": str(name),
        "version": None,
        "checkpoint": None,
        "preprocessing": None,
        "tokenizer": None,
    }


def summary_provenance(scorers: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``provenance`` block of a summary: the visionprefer version once, each scorer's entry by role."""
    from .. import __version__

    return {
        "visionprefer": __version__,
        "scorers": {role: scorer_provenance(s) for role, s in scorers.items()},
        **extra,
    }


def judge_provenance(judge: Any, guide: str) -> dict[str, Any]:
    """What a pairwise VLM judge is: model, server, sampling, and the guide it read (path and sha256)."""
    from ..resources import data_path

    path = data_path(guide)
    return {
        "model": judge.model,
        "base_url": judge.base_url,
        "temperature": judge.temperature,
        "max_tokens": judge.max_tokens,
        "structured_output": judge.structured_output,
        "guide": {"path": guide, "sha256": file_sha256(path)},
        "orders": "both (a win needs both orders to agree)",
    }
