"""CQ and reward models (PickScore, HPS v2) as metrics of a build's feedback."""

from __future__ import annotations

import pytest

from visionprefer.annotate.stage import load_feedback
from visionprefer.build import build, open_run
from visionprefer.scorers.cq import CQScorer

from .conftest import metrics_build


def test_build_ranks_images_by_cq(tmp_path):
    cfg = metrics_build(
        tmp_path,
        ["two dogs and a cat"],
        """
        vqa_model: tiny-blip
        cq_model: tiny-yolos
        cq_threshold: 0.0
        weights: {cq: 1.0}
        """,
    )
    build(cfg, progress=False)
    run = open_run(cfg)
    feedback = load_feedback(cfg, run)
    assert len(feedback) == 4
    from PIL import Image

    from visionprefer.generate.stage import generation_state

    records = generation_state(run).done
    scorer = CQScorer("tiny-yolos", threshold=0.0)
    for image_id, row in feedback.items():
        with Image.open(run.root / records[image_id]["file"]) as im:
            expected = float(scorer.score(["two dogs and a cat"], [im.convert("RGB")])[0])
        assert row["metrics"]["cq"] == expected
        assert row["overall"] == row["metrics"]["total"] == expected


def test_reward_models_as_build_feedback(tmp_path):
    """PickScore and HPS v2 as metrics of a build: stored per image (HPS as 100 x cosine), weighted into
    `overall`, with pairs per metric, and published in the `metrics` struct."""
    import numpy as np
    from datasets import load_dataset
    from PIL import Image

    from visionprefer.generate.stage import generation_state
    from visionprefer.pairs.stage import load_pairs
    from visionprefer.scorers.hpsv2 import HPSv2Scorer, write_tiny_hpsv2_checkpoint
    from visionprefer.scorers.pickscore import PickScoreScorer

    checkpoint = write_tiny_hpsv2_checkpoint(tmp_path / "hps")
    cfg = metrics_build(
        tmp_path,
        ["two dogs and a cat", "a red car"],
        f"""
        vqa_model: tiny-blip
        pickscore_model: tiny-clip
        pickscore_processor: tiny-clip
        hpsv2_version: v2.1
        hpsv2_checkpoint: hps/{checkpoint.name}
        weights: {{pickscore: 1.0, hpsv2: 0.5}}
        """,
    )
    build(cfg, progress=False)
    run = open_run(cfg)
    feedback = load_feedback(cfg, run)
    assert len(feedback) == 8
    records = generation_state(run).done
    pick = PickScoreScorer("tiny-clip", processor_id="tiny-clip")
    hps = HPSv2Scorer("v2.1", checkpoint=checkpoint)
    for image_id, row in feedback.items():
        rec = records[image_id]
        with Image.open(run.root / rec["file"]) as im:
            image = im.convert("RGB")
        expected_pick = float(pick.score([rec["prompt"]], [image])[0])
        expected_hps = 100.0 * float(hps.score([rec["prompt"]], [image])[0])
        m = row["metrics"]
        assert m["pickscore"] == pytest.approx(expected_pick, rel=1e-5, abs=1e-6)
        assert m["hpsv2"] == pytest.approx(expected_hps, rel=1e-5, abs=1e-6)
        assert row["overall"] == pytest.approx(m["pickscore"] + 0.5 * m["hpsv2"])
    assert {p["aspect"] for p in load_pairs(run)} >= {"pickscore", "hpsv2", "overall"}
    rows = load_dataset(str(run.root / "dataset"), split="train")
    assert np.isfinite([r["metrics"]["pickscore"] for r in rows]).all()
    assert "PickScore" in (run.root / "dataset" / "README.md").read_text()
