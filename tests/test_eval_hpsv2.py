"""eval hpsv2 end to end: per-style chunk statistics as the official tool, from --model and --images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visionprefer.cli import main
from visionprefer.evaluate.hpsv2 import style_statistics

from .conftest import REPO

TINY = REPO / "tests" / "data" / "hpsv2" / "tiny" / "HPS_tiny.pt"


def test_style_statistics_are_the_official_chunked_ones():
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]
    got = style_statistics(scores, chunk=2)  # chunks [1,2] [3,4] [5] -> means 1.5, 3.5, 5
    assert got["mean"] == pytest.approx((1.5 + 3.5 + 5) / 3)
    assert got["std"] == pytest.approx(np.std([1.5, 3.5, 5.0]))  # population std (n)
    assert got["n_images"] == 5


def test_eval_hpsv2_from_model_then_images(tmp_path, capsys):
    bench = tmp_path / "bench"
    bench.mkdir()
    for style in ("anime", "photo"):
        (bench / f"{style}.json").write_text(
            json.dumps([f"a {style} picture of a cat number {i}" for i in range(3)])
        )
    args = ["--benchmark-dir", str(bench), "--styles", "anime,photo", "--checkpoint", str(TINY), "-q"]
    assert main(["eval", "hpsv2", "--model", "tiny-sd15", "--out", str(tmp_path / "a"), *args]) == 0
    summary = json.loads((tmp_path / "a" / "hpsv2_summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "a" / "hpsv2_items.jsonl").read_text().splitlines()]
    assert summary["version"] == "v2.1" and summary["antialias"] is True and summary["n_images"] == 6
    assert sorted({r["image"] for r in rows}) == [
        f"{s}/{i:05d}.jpg" for s in ("anime", "photo") for i in range(3)
    ]
    assert summary["average"] == pytest.approx(np.mean([r["score"] for r in rows]))
    for style in ("anime", "photo"):
        assert summary["styles"][style]["mean"] == pytest.approx(
            np.mean([r["score"] for r in rows if r["style"] == style])
        )
    # Existing images, one zero-byte: a counted skip; the other numbers unchanged.
    (tmp_path / "a" / "images" / "photo" / "00002.jpg").write_bytes(b"")
    assert (
        main(
            ["eval", "hpsv2", "--images", str(tmp_path / "a" / "images"), "--out", str(tmp_path / "b"), *args]
        )
        == 0
    )
    b = json.loads((tmp_path / "b" / "hpsv2_summary.json").read_text())
    assert b["skipped"] == {"zero-byte file": 1} and b["n_images"] == 5
    assert b["styles"]["anime"] == summary["styles"]["anime"]


def test_unknown_style_and_missing_style_folder_are_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "hpsv2",
                "--images",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--styles",
                "anime,cubism",
            ]
        )
        == 2
    )
    assert "unknown style(s) ['cubism']" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "anime.json").write_text('["a cat"]')
    assert (
        main(
            [
                "eval",
                "hpsv2",
                "--images",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--styles",
                "anime",
                "--benchmark-dir",
                str(tmp_path / "b"),
                "--checkpoint",
                str(TINY),
            ]
        )
        == 2
    )
    assert "has no folder for style(s) ['anime']" in capsys.readouterr().err


MODEL_INFO = {
    "id": "tiny-sd15",
    "revision": None,
    "pipeline": "StableDiffusionPipeline",
    "scheduler": "DDIMScheduler",
    "steps": 2,
    "guidance_scale": 7.5,
    "height": 64,
    "width": 64,
    "seed_rule": "derive_seed(0, relative path, 0)",
    "dtype": "float32",
}


def test_a_limited_run_ending_in_a_partial_chunk_writes_no_invalid_submission(tmp_path):
    """--limit 3 with 2-image chunks ends each style in a partial chunk: the style means (means of chunk
    means) then no longer average to the overall mean, which `leaderboard validate` rejects. A limited run
    is not the benchmark, so its submission is refused with one line instead."""
    from PIL import Image

    from visionprefer.errors import ConfigError
    from visionprefer.evaluate.hpsv2 import STYLES, run_hpsv2
    from visionprefer.leaderboard.from_eval import write_eval_submission

    bench, images = tmp_path / "bench", tmp_path / "images"
    bench.mkdir()
    rng = np.random.default_rng(0)
    for style in STYLES:
        (bench / f"{style}.json").write_text(json.dumps([f"a {style} cat {i}" for i in range(5)]))
        (images / style).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / style / f"{i:05d}.jpg")
    out = tmp_path / "o"
    summary = run_hpsv2(
        out, images=images, benchmark_dir=bench, limit=3, chunk=2, checkpoint=str(TINY), progress=False
    )
    with pytest.raises(ConfigError, match=r"--limit 3 scores only the first 3 of 5 prompts per style"):
        write_eval_submission("hpsv2", {**summary, "model": MODEL_INFO}, out, out / "submission.json")
    assert not (out / "submission.json").exists()
    assert summary["complete"] is False and summary["limit"] == 3
    assert summary["prompts_per_style"] == dict.fromkeys(STYLES, 3)
    assert summary["benchmark_prompts_per_style"] == dict.fromkeys(STYLES, 5)


def test_eval_hpsv2_limit_with_submission_is_refused_before_any_work(tmp_path, capsys):
    bench = tmp_path / "bench"
    bench.mkdir()
    for style in ("anime", "concept-art", "paintings", "photo"):
        (bench / f"{style}.json").write_text(json.dumps([f"a {style} cat {i}" for i in range(3)]))
    out = tmp_path / "o"
    args = ["eval", "hpsv2", "--model", "tiny-sd15", "--out", str(out), "--benchmark-dir", str(bench)]
    args += ["--checkpoint", str(TINY), "--limit", "1", "--submission", str(out / "s.json"), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--submission needs the whole HPS v2 benchmark" in err[0]
    assert "drop --limit, or drop --submission" in err[0]
    assert not out.exists()  # nothing generated, nothing scored
    # The whole (here: three-prompt) benchmark does give a valid submission.
    args = [a for a in args if a not in ("--limit", "1")]
    assert main(args) == 0
    assert main(["leaderboard", "validate", str(out / "s.json")]) == 0
