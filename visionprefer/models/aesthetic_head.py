"""The LAION aesthetic predictor v2 head (christophschuhmann/improved-aesthetic-predictor's ``MLP``) and the
description file of a head folder. The scorer is ``visionprefer.scorers.aesthetic``; the definition lives
here so that the tiny-model factory builds a head without importing the scorer.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

LAION_V2 = "laion-aesthetic-v2"
TINY_HEAD_FILE = "aesthetic_head.pth"
HEAD_INFO_FILE = "head.json"


class AestheticMLP(nn.Module):
    """improved-aesthetic-predictor's MLP: Linear/Dropout only, no activations (state-dict keys ``layers.N``)."""

    def __init__(self, input_dim: int = 768):
        super().__init__()
        self.input_dim = input_dim
        self.layers = nn.Sequential(
            nn.Linear(input_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.layers(x)


def write_head_info(folder: Path, *, weights: str, clip_model: str, input_dim: int) -> None:
    """Describe a head folder: which file holds the weights and which CLIP it was trained on."""
    info = {"architecture": LAION_V2, "weights": weights, "clip_model": clip_model, "input_dim": input_dim}
    (Path(folder) / HEAD_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
