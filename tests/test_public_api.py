"""The public API guard: what ``import visionprefer`` exports, and that every name resolves.

Changing this list is an API change: update the README and the version with it.
"""

from __future__ import annotations

import visionprefer

EXPORTED = {
    "BudgetExceeded",
    "BuildConfig",
    "ConfigError",
    "ModelLoadError",
    "RanksTimedOut",
    "RunDirError",
    "SourceError",
    "StageOrderError",
    "VisionPreferError",
    "__version__",
    "build",
    "collect_prompts",
    "estimate_build",
    "generate_images",
    "load_config",
    "run_stage",
    "run_status",
    "tiny_model_path",
}


def test_exported_members():
    assert set(visionprefer.__all__) == EXPORTED
    assert len(visionprefer.__all__) == len(EXPORTED)  # no name listed twice
    for name in visionprefer.__all__:
        assert getattr(visionprefer, name) is not None, name


def test_errors_derive_from_the_root_and_a_builtin():
    for name in EXPORTED:
        obj = getattr(visionprefer, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not visionprefer.VisionPreferError:
            assert issubclass(obj, visionprefer.VisionPreferError), name
            assert any(b in obj.__mro__ for b in (ValueError, RuntimeError, OSError, TimeoutError)), name
