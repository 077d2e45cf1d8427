"""CQ as a build feedback backend: metric feedback whose total is the CQ score alone."""

from __future__ import annotations

from visionprefer.annotate.stage import load_feedback
from visionprefer.build import build, open_run
from visionprefer.config import load_config
from visionprefer.scorers.cq import CQScorer

from .conftest import write_config


def test_build_ranks_images_by_cq(tmp_path):
    (tmp_path / "p.txt").write_text("two dogs and a cat\n")
    cfg = load_config(
        write_config(
            tmp_path,
            f"""\
run_dir: {tmp_path / "run"}
prompts: {{sources: [{{path: p.txt}}]}}
generate: {{generators: [{{preset: tiny-sd15}}, {{preset: tiny-sd21}}], guidance_scales: [3.0, 7.5]}}
annotate:
  backend: metrics
  metrics: {{vqa_model: tiny-blip, clip_model: tiny-clip, aesthetic_model: tiny-aesthetic,
             aesthetic_clip_model: tiny-clip, cq_model: tiny-yolos, cq_threshold: 0.0, weights: {{cq: 1.0}}}}
""",
        )
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
