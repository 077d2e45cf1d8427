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
