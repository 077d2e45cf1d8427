from __future__ import annotations

import json

import numpy as np
from PIL import Image

from visionprefer.cli import main
from visionprefer.scorers import AestheticScorer, CLIPScorer


def test_eval_score_from_model_and_from_images(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a photo of a cat\ntwo dogs in the snow\na red car\n")
    args = [
        "--prompts",
        str(tmp_path / "p.txt"),
        "--metrics",
        "clip,aesthetic,pickscore",
        "--clip-model",
        "tiny-clip",
        "--aesthetic-model",
        "tiny-aesthetic",
        "--pickscore-model",
        "tiny-clip",
        "--pickscore-processor",
        "tiny-clip",
        "-q",
    ]
    assert main(["eval", "score", "--model", "tiny-sd15", "--out", str(tmp_path / "a"), *args]) == 0
    summary = json.loads((tmp_path / "a" / "score_summary.json").read_text())
    assert summary["n_scored"] == 3 and summary["model"]["pipeline"] == "StableDiffusionPipeline"
    items = [json.loads(line) for line in (tmp_path / "a" / "score_items.jsonl").read_text().splitlines()]
    images = [Image.open(tmp_path / "a" / "images" / r["image"]).convert("RGB") for r in items]
    prompts = [r["prompt"] for r in items]
    clip = CLIPScorer("tiny-clip").score(prompts, images)
    assert np.allclose([r["clip"] for r in items], clip, atol=1e-4)
    assert summary["means"]["clip"] == max(float(np.mean(clip)), 0.0)
    aes = AestheticScorer("tiny-aesthetic").image_scores(images)
    assert np.allclose([r["aesthetic"] for r in items], aes, atol=1e-5)

    # The same images as an existing folder, with one corrupt file: a counted skip, not a crash.
    folder = tmp_path / "a" / "images"
    (folder / "00002.png").write_bytes(b"\x89PNG broken")
    assert main(["eval", "score", "--images", str(folder), "--out", str(tmp_path / "b"), *args]) == 0
    summary_b = json.loads((tmp_path / "b" / "score_summary.json").read_text())
    assert summary_b["n_scored"] == 2 and summary_b["skipped"] == {"corrupt image": 1}
    items_b = [json.loads(line) for line in (tmp_path / "b" / "score_items.jsonl").read_text().splitlines()]
    assert items_b[2]["skipped"].startswith("corrupt image")
    assert np.allclose([items_b[0]["clip"], items_b[1]["clip"]], clip[:2], atol=1e-4)


def test_eval_score_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a cat\n")
    code = main(
        [
            "eval",
            "score",
            "--prompts",
            str(tmp_path / "p.txt"),
            "--images",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a folder" in err[0]
    code = main(
        [
            "eval",
            "score",
            "--prompts",
            str(tmp_path / "p.txt"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--metrics",
            "clip,bogus",
        ]
    )
    assert code == 2 and "unknown metric(s) ['bogus']" in capsys.readouterr().err


def test_eval_score_with_cq_and_tiny_detector(tmp_path):
    (tmp_path / "p.txt").write_text("two dogs and a cat\na beautiful sunset\n")
    assert (
        main(
            [
                "eval",
                "score",
                "--model",
                "tiny-sd15",
                "--out",
                str(tmp_path / "o"),
                "--prompts",
                str(tmp_path / "p.txt"),
                "--metrics",
                "cq",
                "--cq-model",
                "tiny-yolos",
                "-q",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "o" / "score_summary.json").read_text())
    items = [json.loads(line) for line in (tmp_path / "o" / "score_items.jsonl").read_text().splitlines()]
    # Random weights at threshold 0.9 detect nothing: the dog/cat prompt scores 0; the sunset prompt names
    # no detectable object, so its CQ is undefined (null) and left out of the mean.
    assert items[0]["cq"] == 0.0 and items[1]["cq"] is None
    assert summary["means"]["cq"] == 0.0
