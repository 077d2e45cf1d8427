"""The eval commands end to end through the CLI, on tiny models."""

from __future__ import annotations

import json

from visionprefer.cli import main

from .conftest import REPO

SAMPLE = REPO.parent / "shared" / "data" / "tifa" / "sample" / "sample_question_answers.json"


def test_eval_tifa_from_model_then_from_images(tmp_path, capsys):
    common = ["--questions", str(SAMPLE), "--vqa-model", "tiny-blip", "--embed-model", "tiny-text-embed", "-q"]
    assert main(["eval", "tifa", "--model", "tiny-sd15", "--out", str(tmp_path / "a"), *common]) == 0
    summary = json.loads((tmp_path / "a" / "tifa_summary.json").read_text())
    assert summary["n_captions"] == 2 and 0.0 <= summary["tifa_average"] <= 1.0
    items = [json.loads(line) for line in (tmp_path / "a" / "tifa_items.jsonl").read_text().splitlines()]
    per_caption = {}
    for it in items:
        per_caption.setdefault(it["caption_id"], []).append(it["score"])
    expected = sum(sum(v) / len(v) for v in per_caption.values()) / len(per_caption)
    assert abs(summary["tifa_average"] - expected) < 1e-12
    assert main(["eval", "tifa", "--images", str(tmp_path / "a" / "images"), "--out", str(tmp_path / "b"), *common]) == 0
    again = json.loads((tmp_path / "b" / "tifa_summary.json").read_text())
    assert again["tifa_average"] == summary["tifa_average"]
