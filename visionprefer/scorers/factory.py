"""The one place scorers are constructed: metric feedback (``annotate.metrics``), ``eval score``,
``eval winrate --scorer``, ``eval hpsv2`` and ``eval tifa`` all call :func:`build_scorers` with a
:class:`ScorerSettings`, so a scorer gets the same arguments (device, batch size, CQ threshold, checkpoints)
whichever command loads it.

    from visionprefer.scorers.factory import ScorerSettings, build_scorers
    scorers = build_scorers(["clip", "aesthetic"], ScorerSettings(clip_model="tiny-clip", device="cpu"))

Importing this module is cheap: each scorer class (and torch) is imported when it is built.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Every scorer the factory builds, by role name.
SCORERS = ("clip", "aesthetic", "pickscore", "hpsv2", "cq", "vqa")

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_AESTHETIC = "laion-aesthetic-v2"
DEFAULT_PICKSCORE = "yuvalkirstain/PickScore_v1"
DEFAULT_PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
DEFAULT_HPS_VERSION = "v2.1"
DEFAULT_CQ = "hustvl/yolos-tiny"
DEFAULT_CQ_THRESHOLD = 0.9  # scorers.cq.DEFAULT_THRESHOLD (not imported: that module imports torch)
DEFAULT_VQA = "Salesforce/blip-vqa-base"


@dataclass(frozen=True)
class ScorerSettings:
    """Every argument a scorer is constructed with. ``device`` and ``batch_size`` apply to all of them.

    ``aesthetic_clip_model`` None: the CLIP the head was trained on (and the CLIP scorer's model is reused
    when it is the same). ``pickscore_processor`` None: the PickScore checkpoint's own processor.
    ``hpsv2_checkpoint`` None: the version's official file from the Hub.
    """

    device: str = "auto"
    batch_size: int = 16
    clip_model: str = DEFAULT_CLIP
    aesthetic_model: str = DEFAULT_AESTHETIC
    aesthetic_clip_model: str | None = None
    pickscore_model: str = DEFAULT_PICKSCORE
    pickscore_processor: str | None = DEFAULT_PICKSCORE_PROCESSOR
    hpsv2_version: str = DEFAULT_HPS_VERSION
    hpsv2_checkpoint: str | os.PathLike[str] | None = None
    hpsv2_antialias: bool = True
    cq_model: str = DEFAULT_CQ
    cq_threshold: float = DEFAULT_CQ_THRESHOLD
    vqa_model: str = DEFAULT_VQA

    def replace(self, **changes: Any) -> ScorerSettings:
        return dataclasses.replace(self, **changes)

    def with_model(self, model: str) -> ScorerSettings:
        """These settings with one model id (or folder) naming whichever scorer is built: its model, and
        for PickScore its own processor; for HPS a local checkpoint. What ``--scorer-model`` means."""
        return self.replace(
            clip_model=model,
            aesthetic_model=model,
            pickscore_model=model,
            pickscore_processor=None,
            hpsv2_checkpoint=model,
            cq_model=model,
        )


def check_scorer_names(
    names: Sequence[str], *, allowed: Sequence[str] = SCORERS, what: str = "scorer"
) -> None:
    from ..errors import ConfigError

    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; choose from {', '.join(allowed)}")


def build_scorer(name: str, settings: ScorerSettings, *, clip: Any = None) -> Any:
    """One scorer by role name. ``clip``: a built CLIP scorer the aesthetic head may reuse."""
    s = settings
    if name == "clip":
        from .clip_score import CLIPScorer

        return CLIPScorer(s.clip_model, device=s.device, batch_size=s.batch_size)
    if name == "aesthetic":
        from .aesthetic import AestheticScorer

        return AestheticScorer(
            s.aesthetic_model,
            clip_model=s.aesthetic_clip_model,
            device=s.device,
            batch_size=s.batch_size,
            clip=clip,
        )
    if name == "pickscore":
        from .pickscore import PickScoreScorer

        return PickScoreScorer(
            s.pickscore_model, processor_id=s.pickscore_processor, device=s.device, batch_size=s.batch_size
        )
    if name == "hpsv2":
        from .hpsv2 import HPSv2Scorer

        return HPSv2Scorer(
            s.hpsv2_version,
            checkpoint=s.hpsv2_checkpoint,
            device=s.device,
            batch_size=s.batch_size,
            antialias=s.hpsv2_antialias,
        )
    if name == "cq":
        from .cq import CQScorer

        return CQScorer(s.cq_model, threshold=s.cq_threshold, device=s.device, batch_size=s.batch_size)
    if name == "vqa":
        from .vqa import BlipVQA

        return BlipVQA(s.vqa_model, device=s.device, batch_size=s.batch_size)
    check_scorer_names([name])
    raise AssertionError(name)  # pragma: no cover


def build_scorers(names: Sequence[str], settings: ScorerSettings | None = None) -> dict[str, Any]:
    """Each named scorer, loaded once, in the order given (a dict name -> scorer). The aesthetic head
    reuses the CLIP scorer's model when ``clip`` comes before it and names the same model."""
    settings = settings or ScorerSettings()
    check_scorer_names(names)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        out[name] = build_scorer(name, settings, clip=out.get("clip"))
    return out
