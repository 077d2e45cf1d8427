"""The eval commands end to end through the CLI, on tiny models."""

from __future__ import annotations

import json

from visionprefer.cli import main

from .conftest import REPO

SAMPLE = REPO.parent / "shared" / "data" / "tifa" / "sample" / "sample_question_answers.json"


def test_eval_tifa_from_model_then_from_images(tmp_path, capsys):
    common = [
        "--questions",
        str(SAMPLE),
        "--vqa-model",
        "tiny-blip",
        "--embed-model",
        "tiny-text-embed",
        "-q",
    ]
    assert main(["eval", "tifa", "--model", "tiny-sd15", "--out", str(tmp_path / "a"), *common]) == 0
    summary = json.loads((tmp_path / "a" / "tifa_summary.json").read_text())
    assert summary["n_captions"] == 2 and 0.0 <= summary["tifa_average"] <= 1.0
    items = [json.loads(line) for line in (tmp_path / "a" / "tifa_items.jsonl").read_text().splitlines()]
    per_caption = {}
    for it in items:
        per_caption.setdefault(it["caption_id"], []).append(it["score"])
    expected = sum(sum(v) / len(v) for v in per_caption.values()) / len(per_caption)
    assert abs(summary["tifa_average"] - expected) < 1e-12
    assert (
        main(
            [
                "eval",
                "tifa",
                "--images",
                str(tmp_path / "a" / "images"),
                "--out",
                str(tmp_path / "b"),
                *common,
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "b" / "tifa_summary.json").read_text())
    assert again["tifa_average"] == summary["tifa_average"]


def test_submissions_from_eval_validate_and_render(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a photo of a cat\na red car\n")
    lb = tmp_path / "leaderboard"
    for name, model in (("m1", "tiny-sd15"), ("m2", "tiny-sd21")):
        out = lb / name
        args = [
            "eval",
            "score",
            "--model",
            model,
            "--out",
            str(out),
            "--prompts",
            str(tmp_path / "p.txt"),
            "--metrics",
            "clip",
            "--clip-model",
            "tiny-clip",
            "--submission",
            str(out / "submission.json"),
            "-q",
        ]
        assert main(args) == 0
        assert main(args) == 0  # images exist now: the model is described from its config files
    sub = json.loads((lb / "m1" / "submission.json").read_text())
    assert sub["model"]["pipeline"] == "StableDiffusionPipeline" and sub["model"]["resolution"] == {
        "height": 64,
        "width": 64,
    }
    assert sub["benchmarks"]["score"]["summary"]["clip"]["mean"] >= 0.0
    assert (
        main(
            [
                "leaderboard",
                "validate",
                str(lb / "m1" / "submission.json"),
                str(lb / "m2" / "submission.json"),
            ]
        )
        == 0
    )
    assert (
        main(
            ["leaderboard", "render", str(lb), "--out", str(tmp_path / "table"), "--benchmark", "score", "-q"]
        )
        == 0
    )
    table = (tmp_path / "table" / "leaderboard.md").read_text()
    assert "tiny-sd15" in table and "tiny-sd21" in table
    # A tampered results file is caught, with the field named.
    (lb / "m2" / "score_items.jsonl").write_text("tampered\n")
    assert main(["leaderboard", "validate", str(lb / "m2" / "submission.json")]) == 1
    assert "benchmarks.score.results" in capsys.readouterr().err
