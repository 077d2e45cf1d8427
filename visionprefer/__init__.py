"""visionprefer: fine-grained AI-feedback preference datasets for text-to-image models.

Importing the package is cheap: no torch, no device probe, no download. The stages import their heavy
dependencies when they run.

    from visionprefer import load_config, build
    report = build(load_config("examples/quickstart.yaml"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (
    BudgetExceeded,
    ConfigError,
    ModelLoadError,
    RanksTimedOut,
    RunDirError,
    SourceError,
    StageOrderError,
    VisionPreferError,
)

_LAZY = {
    "load_config": "visionprefer.config",
    "BuildConfig": "visionprefer.config",
    "build": "visionprefer.build",
    "run_stage": "visionprefer.build",
    "collect_prompts": "visionprefer.prompts.stage",
    "generate_images": "visionprefer.generate.stage",
    "run_status": "visionprefer.status",
    "estimate_build": "visionprefer.estimate",
    "tiny_model_path": "visionprefer.models.tiny",
}

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "ModelLoadError",
    "RanksTimedOut",
    "RunDirError",
    "SourceError",
    "StageOrderError",
    "VisionPreferError",
    "__version__",
    "load_config",
    "BuildConfig",
    "build",
    "run_stage",
    "collect_prompts",
    "generate_images",
    "run_status",
    "estimate_build",
    "tiny_model_path",
]

if TYPE_CHECKING:
    from .build import build, run_stage
    from .config import BuildConfig, load_config
    from .estimate import estimate_build
    from .generate.stage import generate_images
    from .models.tiny import tiny_model_path
    from .prompts.stage import collect_prompts
    from .status import run_status


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visionprefer' has no attribute {name!r}")
