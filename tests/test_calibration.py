"""The judge's calibration gate: the judge answers pairs of a human test set before the main annotation,
and the build stops below min_accuracy without annotating anything; above it the build continues."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visionprefer.annotate.judge import Judge, overall_score, settle_ranks, validate_judgement
from visionprefer.cli import main
from visionprefer.config import load_config
from visionprefer.status import format_status, run_status
from visionprefer.testing.fake_openai import answer_judge

from .test_annotate import _config

N_PAIRS = 12
AGREE = 9  # the human labels follow the scripted judge on the first 9 pairs and contradict it on the rest


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _judge_prefers_first(cfg, prompt: str, images: list[bytes], tmp) -> bool | None:
    """What the scripted judge will say about this pair, computed the way the stage asks it: True (image
    0 preferred), False (image 1), None (a tie in overall)."""
    proto = Judge(cfg.annotate.judge, cfg.annotate.aspect_weights)
    files = []
    for i, data in enumerate(images):
        path = tmp / f"{abs(hash((prompt, i)))}.png"
        path.write_bytes(data)
        files.append(str(path))
    text = answer_judge(proto.request(prompt, files))
    settled, _ = settle_ranks(validate_judgement(text, 2, 1, 5), proto.weights)
    a, b = (overall_score(r, proto.weights) for r in settled)
    return None if a == b else a > b


def _testset(tmp_path, cfg) -> tuple[str, float]:
    """A Pick-a-Pic-format parquet of N_PAIRS pairs whose labels agree with the judge on AGREE of them;
    returns its path and the accuracy the protocol (human ties none; a predicted tie is wrong) must give."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    rows, correct = [], 0
    for k in range(N_PAIRS):
        prompt = f"calibration prompt {k}"
        images = [_png(2 * k), _png(2 * k + 1)]
        first = _judge_prefers_first(cfg, prompt, images, scratch)
        agrees = k < AGREE
        label_0 = 1.0 if (first is True) == agrees else 0.0
        correct += first is not None and agrees
        rows.append(
            {
                "caption": prompt,
                "jpg_0": images[0],
                "jpg_1": images[1],
                "label_0": label_0,
                "label_1": 1.0 - label_0,
                "ranking_id": k,
            }
        )
    path = tmp_path / "pickapic_test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path), correct / N_PAIRS


def _calibrated(tmp_path, base_url: str, data: str, min_accuracy: float):
    extra = f"    calibration: {{testset: pickapic_v1_test, data: '{data}', pairs: {N_PAIRS}, min_accuracy: {min_accuracy}}}\n"
    return _config(tmp_path, base_url, judge_extra=extra)


def test_calibration_gate_stops_below_and_continues_above(tmp_path, fake_llm):
    server = fake_llm(responder="judge")
    plain = load_config(_config(tmp_path, server.base_url))
    data, expected = _testset(tmp_path, plain)
    assert 0.4 < expected < 0.95

    # Above the judge's accuracy: the build stops before any image is annotated.
    cfg_path = _calibrated(tmp_path, server.base_url, data, round(expected + 0.05, 3))
    from visionprefer.estimate import estimate_build

    before = estimate_build(load_config(cfg_path))["llm"]["calibration"]  # estimated before any spend
    assert (before["calls"], before["cached"], before["images_per_call"]) == (N_PAIRS, 0, 2)
    assert before["usd"] > 0 and before["input_tokens"] > 0
    assert main(["build", str(cfg_path), "-q"]) == 4
    after = estimate_build(load_config(cfg_path))["llm"]["calibration"]
    assert (after["calls"], after["cached"], after["usd"]) == (0, N_PAIRS, 0)  # recorded: not asked again
    chats = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == N_PAIRS  # the calibration pairs only: nothing of the build was asked
    st = run_status(tmp_path / "run")
    ann = st["stages"]["annotate"]
    assert ann["done"] == 0
    cal = ann["calibration"]
    assert cal["accuracy"] == pytest.approx(expected) and cal["n_pairs"] == N_PAIRS
    assert cal["protocol"] == "pairwise_excl_ties" and cal["wilson_ci"][0] < expected < cal["wilson_ci"][1]
    assert "judge calibration: accuracy" in format_status(st) and "FAILED" in format_status(st)
    recorded = json.loads((tmp_path / "run" / "annotate" / "calibration.json").read_text())
    assert recorded["usd"] > 0 and st["llm"]["calibration"]["completions"] == N_PAIRS

    # Below it: the same judge passes on the recorded result (nothing asked again) and the build goes on.
    cfg_path = _calibrated(tmp_path, server.base_url, data, round(expected - 0.05, 3))
    assert main(["build", str(cfg_path), "-q"]) == 0
    chats = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == N_PAIRS + 3  # + the build's three groups
    st = run_status(tmp_path / "run")
    assert st["stages"]["annotate"]["done"] == 3 and "passed" in format_status(st)
    card = (tmp_path / "run" / "dataset" / "README.md").read_text(encoding="utf-8")
    section = card.split("### Label quality", 1)[1].split("\n#", 1)[0]
    assert (
        f"**{expected:.1%}**" in section and "pickapic_v1_test" in section and "pairwise_excl_ties" in section
    )
    lo, hi = cal["wilson_ci"]
    assert f"{lo:.1%}–{hi:.1%}" in section
    # The build report shows it too, as a browser renders the page.
    page = (tmp_path / "run" / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="label-quality"' in page and f"<b>{expected:.1%}</b>" in page
    if shutil.which("chromium"):
        check = Path(__file__).resolve().parent.parent / "scripts" / "check_report.py"
        proc = subprocess.run(
            [sys.executable, str(check), str(tmp_path / "run"), "--screenshot", str(tmp_path / "shot.png")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Label quality" in proc.stdout.split("sections:", 1)[1].splitlines()[0]


def test_calibration_needs_its_data(tmp_path):
    from visionprefer.errors import ConfigError

    path = _config(tmp_path, "http://127.0.0.1:9/v1", judge_extra="    calibration: {pairs: 5}\n")
    with pytest.raises(ConfigError, match="calibration.data"):
        load_config(path)
