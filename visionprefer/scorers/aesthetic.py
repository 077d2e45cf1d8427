"""LAION aesthetic predictor v2: an MLP on the L2-normalised CLIP ViT-L/14 image embedding (AVA ~1-10 scale).

The head is christophschuhmann/improved-aesthetic-predictor's ``MLP``: five ``Linear`` layers (768-1024-128-
64-16-1), dropout after the first three, no activations (an affine map at inference), state-dict keys
``layers.0``, ``layers.2``, ``layers.4``, ``layers.6``, ``layers.7`` (``.weight``/``.bias``). The published
weights ``sac+logos+ava1-l14-linearMSE.pth`` (3.7 MB) live in that GitHub repository, not on the Hub: they
are downloaded once by URL into ``$VISIONPREFER_CACHE/aesthetic/`` (default ``~/.cache/visionprefer``),
written atomically, checked by loading them strictly, and reused afterwards. The downloader is injectable.

Heads: ``laion-aesthetic-v2`` (the real one), ``tiny-aesthetic`` (random weights for ``tiny-clip``, from the
tiny-model factory), or a local ``.pth``/``.safetensors`` state dict (or a folder holding one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelLoadError
from ..models.aesthetic_head import (  # noqa: F401 (re-exported)
    HEAD_INFO_FILE,
    LAION_V2,
    TINY_HEAD_FILE,
    AestheticMLP,
    write_head_info,
)
from ._common import cache_root, check_batch_size, first_line, resolve_device

Downloader = Callable[[str, Path], None]
"""``downloader(url, destination)`` writes the file at ``url`` to ``destination`` (or raises)."""

LAION_V2_FILE = "sac+logos+ava1-l14-linearMSE.pth"
LAION_V2_URL = (
    "https://raw.githubusercontent.com/christophschuhmann/improved-aesthetic-predictor/main/"
    "sac%2Blogos%2Bava1-l14-linearMSE.pth"
)
LAION_V2_CLIP = "openai/clip-vit-large-patch14"


# ------------------------------------------------------------------------------------------------ weights
def load_head_state(path: Path) -> dict[str, Any]:
    """A head's state dict from a ``.pth`` (torch.save of a state dict) or a ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a load error with its first line
        raise ModelLoadError(f"cannot read aesthetic head weights {str(path)!r}: {first_line(e)}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        raise ModelLoadError(
            f"aesthetic head weights {str(path)!r} are not an improved-aesthetic-predictor MLP state dict "
            "(no 'layers.0.weight')"
        )
    return state


def build_head(state: dict[str, Any], *, source: str):
    """An eval-mode :class:`AestheticMLP` loaded strictly from ``state`` (input size from ``layers.0``)."""
    input_dim = int(state["layers.0.weight"].shape[1])
    head = AestheticMLP(input_dim=input_dim)
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(
            f"aesthetic head {source!r} does not fit the LAION v2 MLP: {first_line(e)}"
        ) from None
    return head.eval()


def download_laion_v2(
    *, cache_dir: Path | None = None, downloader: Downloader | None = None, url: str = LAION_V2_URL
) -> Path:
    """Path of the cached LAION v2 weights, downloading them first if needed (atomic, verified, locked)."""
    from ..download import cached_download

    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "aesthetic"
    return cached_download(
        url,
        folder / LAION_V2_FILE,
        check=lambda path: build_head(load_head_state(path), source=url),  # refuse a broken or wrong file
        recheck_cached=False,
        downloader=downloader,
        name="the LAION aesthetic head",
        error=ModelLoadError,
    )


def resolve_head(
    head: str | os.PathLike, *, cache_dir: Path | None = None, downloader: Downloader | None = None
) -> tuple[Path, str | None]:
    """``(weights file, CLIP model the head was trained on or None if unknown)`` for a head name or path."""
    from ..models.tiny import is_tiny, tiny_model_path

    name = os.fspath(head)
    if name == LAION_V2:
        return download_laion_v2(cache_dir=cache_dir, downloader=downloader), LAION_V2_CLIP
    path = tiny_model_path(name) if is_tiny(name) else Path(name).expanduser()
    if path.is_dir():
        info_file = path / HEAD_INFO_FILE
        if info_file.is_file():
            info = json.loads(info_file.read_text())
            return path / info["weights"], info.get("clip_model")
        found = sorted(p for p in path.iterdir() if p.suffix in (".pth", ".pt", ".safetensors"))
        if len(found) != 1:
            raise ModelLoadError(
                f"aesthetic head folder {name!r} must hold exactly one .pth/.safetensors file"
            )
        return found[0], None
    if path.is_file():
        return path, (LAION_V2_CLIP if path.name == LAION_V2_FILE else None)
    raise ModelLoadError(
        f"unknown aesthetic head {name!r}: use {LAION_V2!r}, 'tiny-aesthetic', or a path to a .pth/.safetensors"
    )


# ------------------------------------------------------------------------------------------------ scorer
class AestheticScorer:
    """LAION aesthetic v2 score per image (AVA ~1-10; higher is better) from a CLIP image embedding.

    ``clip``: an existing :class:`~visionprefer.scorers.CLIPScorer` to reuse (the CLIP model is then loaded
    once for both metrics). It is used when ``clip_model`` is None or names the same model; otherwise the
    scorer loads its own. ``clip_model`` defaults to the CLIP the head was trained on
    (``openai/clip-vit-large-patch14`` for ``laion-aesthetic-v2``, ``tiny-clip`` for ``tiny-aesthetic``).
    """

    higher_is_better = True
    name = "aesthetic"

    def __init__(
        self,
        head: str | os.PathLike = LAION_V2,
        *,
        clip_model: str | None = None,
        device: str = "auto",
        batch_size: int = 16,
        clip: Any = None,
        downloader: Downloader | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        from .clip_score import CLIPScorer

        self.batch_size = check_batch_size(batch_size)
        weights, paired_clip = resolve_head(
            head, cache_dir=Path(cache_dir) if cache_dir is not None else None, downloader=downloader
        )
        self.head_name = os.fspath(head)
        self.weights_path = weights
        wanted = clip_model or paired_clip or LAION_V2_CLIP
        if clip is not None and (clip_model is None or clip_model == clip.model_id):
            self.clip = clip
        else:
            self.clip = CLIPScorer(wanted, device=device, batch_size=batch_size)
        self.clip_model = self.clip.model_id
        self.device = self.clip.device if device == "auto" else resolve_device(device)
        self.head = build_head(load_head_state(weights), source=self.head_name).to(self.device)
        if self.head.input_dim != self.clip.embedding_dim:
            raise ModelLoadError(
                f"aesthetic head {self.head_name!r} takes {self.head.input_dim}-dim embeddings but CLIP "
                f"{self.clip_model!r} gives {self.clip.embedding_dim}-dim ones (use the CLIP the head was trained on)"
            )

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Head outputs for L2-normalised image embeddings, shape ``(n,)``, float64."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.head.input_dim:
            raise ValueError(f"expected embeddings of shape (n, {self.head.input_dim}), got {emb.shape}")
        out = []
        for start in range(0, len(emb), self.batch_size):
            with torch.inference_mode():
                pred = self.head(torch.from_numpy(emb[start : start + self.batch_size]).to(self.device))
            out.append(pred.float().cpu().numpy().reshape(-1))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0, dtype=np.float64)

    def image_scores(self, images: Sequence[Any]) -> np.ndarray:
        """Aesthetic score per image (AVA ~1-10 for the real head)."""
        return self.score_embeddings(self.clip.image_embeddings(images))

    def score(self, prompts: Sequence[str] | None, images: Sequence[Any]) -> np.ndarray:
        """:class:`ImageTextScorer` form: the prompt is not used (aesthetics depend on the image only)."""
        images = list(images)
        if prompts is not None and len(list(prompts)) != len(images):
            raise ValueError(
                f"{len(list(prompts))} prompts for {len(images)} images: give one prompt per image"
            )
        return self.image_scores(images)
