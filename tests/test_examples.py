from __future__ import annotations

import pytest

from visionprefer.config import load_config
from visionprefer.estimate import estimate_build

from .conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_load_and_estimate(path):
    cfg = load_config(path)
    est = estimate_build(cfg)
    assert est["prompts"] > 0 and est["images"] > 0


def test_visionprefer_example_uses_the_four_real_presets():
    cfg = load_config(REPO / "examples" / "visionprefer.yaml")
    assert [g.preset for g in cfg.generate.generators] == ["sd15", "sd21", "dreamlike", "sdxl"]
    est = estimate_build(cfg)
    assert est["images"] == est["prompts"] * 4
    assert est["generators"]["sdxl"]["images_per_gpu_hour"] == 700
