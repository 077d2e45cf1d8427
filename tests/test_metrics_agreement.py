"""Metric feedback measured against people: `eval agreement --scorer cq` and `--metrics CONFIG` (the weighted
total a build stores, LLM questions estimated, capped and cached under --out), and the metrics build's
calibration gate (`annotate.metrics.calibration`)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from visionprefer.annotate.stage import load_feedback
from visionprefer.build import build, open_run
from visionprefer.cli import main
from visionprefer.scorers import template_questions
from visionprefer.status import run_status

from .conftest import metrics_build

PROMPTS = ["two dogs and a cat", "a red apple on a wooden table"]


def _png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _row(k, prompt, a: bytes, b: bytes, label_0: float) -> dict:
    """One Pick-a-Pic test row (ranking_id, caption, jpg_0, jpg_1, label_0, label_1)."""
    return {
        "ranking_id": f"r{k}",
        "caption": prompt,
        "jpg_0": a,
        "jpg_1": b,
        "label_0": label_0,
        "label_1": 1.0 - label_0,
    }


def _hand_accuracy(pairs: list[tuple[float, float, float]]) -> float:
    """pairwise_excl_ties by hand: human ties (label 0.5) left out, a predicted tie is wrong."""
    decisive = [(s0, s1, label) for s0, s1, label in pairs if label != 0.5]
    correct = sum((label == 1.0 and s0 > s1) or (label == 0.0 and s1 > s0) for s0, s1, label in decisive)
    return correct / len(decisive)


def _read_scores(out) -> dict[tuple[str, int], float | None]:
    rows = [json.loads(line) for line in (out / "agreement_scores.jsonl").read_text().splitlines()]
    return {(r["item_id"], r["image_index"]): r["score"] for r in rows}


def _chats(server) -> list[dict]:
    return [r for r in server.requests() if r["path"].endswith("/chat/completions")]


# ---------------------------------------------------------------------------------------------------
# eval agreement --metrics


def _agree(data, out, *candidate: str) -> int:
    """``visionprefer eval agreement`` on a Pick-a-Pic-format copy with ``candidate``'s options."""
    args = ["eval", "agreement", "--testset", "pickapic_v1_test", "--data", str(data), *candidate]
    return main([*args, "--out", str(out)])


def _llm_build(tmp_path, base_url: str, *, max_cost: float | None = None, extra: str = ""):
    """A metrics build with LLM-written questions, VLM answers, CQ and four weights (``extra``: one more
    line of its ``annotate.metrics``)."""
    cap = f", max_cost_usd: {max_cost:.10f}" if max_cost is not None else ""
    llm = f"{{model: gpt-4o-mini, base_url: '{base_url}', concurrency: 4, backoff_s: 0.01{cap}}}"
    return metrics_build(
        tmp_path,
        PROMPTS,
        f"""
        questions: llm
        question_llm: {llm}
        vqa_backend: vlm
        vqa_llm: {llm}
        cq_model: tiny-yolos
        cq_threshold: 0.0
        weights: {{vqa: 1.0, clip: 0.05, aesthetic: 0.5, cq: 0.25}}
        {extra}
        """,
    )


def test_agreement_of_the_weighted_total_is_what_the_build_stores(tmp_path, fake_llm):
    from visionprefer.generate.stage import generation_state

    server = fake_llm(responder="metrics")
    cfg = _llm_build(tmp_path, server.base_url)
    build(cfg, progress=False)
    run = open_run(cfg)
    stored = {image_id: row["overall"] for image_id, row in load_feedback(cfg, run).items()}
    assert len(stored) == 8
    records = generation_state(run).done
    by_prompt: dict[str, list[str]] = {}
    for image_id in sorted(stored):
        by_prompt.setdefault(records[image_id]["prompt"], []).append(image_id)

    # A Pick-a-Pic test file of the build's own images: two pairs per prompt, labels set here (one a tie).
    rows, truth = [], {}
    labels = iter([1.0, 0.0, 0.5, 1.0])
    for prompt in PROMPTS:
        ids = by_prompt[prompt]
        for a, b in ((ids[0], ids[1]), (ids[2], ids[3])):
            k = len(rows)
            label = next(labels)
            data = [(run.root / records[i]["file"]).read_bytes() for i in (a, b)]
            rows.append(_row(k, prompt, *data, label))
            truth[f"r{k}"] = (a, b, label)
    data = _parquet(tmp_path / "pick.parquet", rows)
    before = len(_chats(server))

    out = tmp_path / "agree"
    assert _agree(data, out, "--metrics", str(tmp_path / "config.yaml"), "--bootstrap", "50") == 0

    scores = _read_scores(out)
    assert len(scores) == 8
    for item_id, (a, b, _) in truth.items():
        # the same images scored in another batch: equal to the stored total up to float32 rounding
        assert scores[(item_id, 0)] == pytest.approx(stored[a], rel=1e-6, abs=1e-6)
        assert scores[(item_id, 1)] == pytest.approx(stored[b], rel=1e-6, abs=1e-6)
    summary = json.loads((out / "agreement_summary.json").read_text())
    expected = _hand_accuracy([(stored[a], stored[b], label) for a, b, label in truth.values()])
    assert summary["result"]["value"] == pytest.approx(expected)
    assert summary["result"]["n_pairs"] == 3 and summary["result"]["human_ties"] == 1
    candidate = summary["candidate"]
    assert (candidate["kind"], candidate["source"]) == ("scorer", "metrics")
    assert set(summary["input_sha256"]) == {"metrics_config"}
    assert candidate["weights"] == {"vqa": 1.0, "clip": 0.05, "aesthetic": 0.5, "cq": 0.25}
    # Estimated first: one question call per prompt, nothing cached under --out yet.
    estimate = candidate["llm_estimate"]
    assert estimate["questions"]["calls"] == len(PROMPTS) and estimate["questions"]["cached"] == 0

    # Paid through the LLM layer into --out's cache and usage log (the build's cache is the run's own).
    asked = len(_chats(server)) - before
    n_vqa = sum(4 * len(template_questions(p)) for p in PROMPTS)  # 4 test images a prompt
    assert asked == len(PROMPTS) + n_vqa
    from visionprefer.llm.usage import usage_totals

    usage = usage_totals(out / "llm")
    assert usage["questions"]["completions"] == len(PROMPTS) and usage["vqa"]["completions"] == n_vqa
    n = len(server.requests())
    assert _agree(data, out, "--metrics", str(tmp_path / "config.yaml"), "--bootstrap", "50") == 0
    assert len(server.requests()) == n  # a rerun is answered from --out's cache
    assert _read_scores(out) == scores


def test_agreement_metrics_estimate_over_the_budget_asks_nothing(tmp_path, fake_llm, capsys):
    server = fake_llm(responder="metrics")
    _llm_build(tmp_path, server.base_url, max_cost=0.0000001)  # less than one question call costs
    rows = [_row(k, PROMPTS[k % 2], _png(2 * k), _png(2 * k + 1), 1.0) for k in range(4)]
    data = _parquet(tmp_path / "pick.parquet", rows)
    code = _agree(data, tmp_path / "agree", "--metrics", str(tmp_path / "config.yaml"))
    assert code == 3  # BudgetExceeded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "question_llm.max_cost_usd" in err[0] and "nothing was asked" in err[0]
    assert not _chats(server)


# ---------------------------------------------------------------------------------------------------
# eval agreement --scorer cq


def test_agreement_with_the_cq_scorer(tmp_path):
    from PIL import Image

    from visionprefer.scorers.cq import CQScorer

    scorer = CQScorer("tiny-yolos", threshold=0.0)
    # Each caption names the detector's top label on image 0 ("a <label>"), so that CQ tells the images
    # apart (on random images the tiny detector's labels are real COCO names); labels alternate.
    rows = []
    for k in range(6):
        data = [_png(10 + 2 * k), _png(11 + 2 * k)]
        top = scorer.detect([Image.open(io.BytesIO(data[0])).convert("RGB")])[0][0].label
        rows.append(_row(k, f"a {top}", *data, [1.0, 0.0][k % 2]))
    data = _parquet(tmp_path / "pick.parquet", rows)
    out = tmp_path / "agree"
    cq = ["--scorer", "cq", "--scorer-model", "tiny-yolos", "--cq-threshold", "0.0", "--device", "cpu"]
    assert _agree(data, out, *cq, "--bootstrap", "50") == 0
    scores = _read_scores(out)
    pairs = []
    for row in rows:
        images = [Image.open(io.BytesIO(row[k])).convert("RGB") for k in ("jpg_0", "jpg_1")]
        expected = [float(v) for v in scorer.score([row["caption"]] * 2, images)]
        got = [scores[(row["ranking_id"], i)] for i in (0, 1)]
        for e, g in zip(expected, got, strict=True):
            assert (g is None) if math.isnan(e) else g == pytest.approx(e, rel=1e-6)
        pairs.append((*expected, row["label_0"]))
    summary = json.loads((out / "agreement_summary.json").read_text())
    assert summary["candidate"] == {
        "kind": "scorer",
        "source": "scorer",
        "scorer": "cq",
        "id": "tiny-yolos",  # --scorer-model names the candidate when --candidate does not
        "model": "tiny-yolos",
        "cq_threshold": 0.0,
    }
    assert not any(math.isnan(v) for p in pairs for v in p[:2])
    assert sum(p[0] != p[1] for p in pairs) >= 3  # CQ prefers one image on most pairs
    assert summary["result"]["value"] == pytest.approx(_hand_accuracy(pairs))


# ---------------------------------------------------------------------------------------------------
# annotate.metrics.calibration

N_PAIRS = 10
AGREE = 7  # the labels follow the weighted total on the first 7 pairs and contradict it on the rest
CAL_PROMPTS = [f"a photo of object number {k}" for k in range(N_PAIRS)]


def _calibration_set(tmp_path) -> tuple[str, float]:
    """A Pick-a-Pic parquet of random image pairs, labelled from the weighted total 0.05 x CLIP + 0.5 x
    aesthetic computed here with independently loaded tiny models; returns its path and the accuracy."""
    from PIL import Image

    from visionprefer.scorers.aesthetic import AestheticScorer
    from visionprefer.scorers.clip_score import CLIPScorer

    clip = CLIPScorer("tiny-clip", device="cpu")
    aesthetic = AestheticScorer("tiny-aesthetic", clip_model="tiny-clip", device="cpu")
    rows, correct = [], 0
    for k, prompt in enumerate(CAL_PROMPTS):
        data = [_png(100 + 2 * k), _png(101 + 2 * k)]
        images = [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
        c, a = clip.score([prompt] * 2, images), aesthetic.score([prompt] * 2, images)
        total = [0.05 * float(c[i]) + 0.5 * float(a[i]) for i in (0, 1)]
        assert total[0] != total[1]
        first = total[0] > total[1]
        agrees = k < AGREE
        rows.append(_row(k, prompt, *data, 1.0 if first == agrees else 0.0))
        correct += agrees
    return str(_parquet(tmp_path / "human.parquet", rows)), correct / N_PAIRS


def _calibrated_build(tmp_path, data: str, min_accuracy: float):
    metrics_build(
        tmp_path,
        PROMPTS,
        f"""
        vqa_model: tiny-blip
        device: cpu
        weights: {{clip: 0.05, aesthetic: 0.5}}
        calibration: {{testset: pickapic_v1_test, data: '{data}', pairs: {N_PAIRS}, min_accuracy: {min_accuracy}}}
        """,
    )
    return tmp_path / "config.yaml"


def test_metrics_calibration_gate_stops_below_and_continues_above(tmp_path, monkeypatch):
    from visionprefer.annotate import metrics

    data, expected = _calibration_set(tmp_path)
    assert expected == 0.7
    measured: list[str] = []  # every prompt whose images a metric model scored
    original = metrics._Scorers.measure

    def spy(self, prompts, images, questions):
        measured.extend(prompts)
        return original(self, prompts, images, questions)

    monkeypatch.setattr(metrics._Scorers, "measure", spy)

    # min_accuracy above the weighted total's accuracy: the build stops before scoring any of its images.
    assert main(["build", str(_calibrated_build(tmp_path, data, 0.75)), "-q"]) == 4
    assert set(measured) == set(CAL_PROMPTS) and len(measured) == 2 * N_PAIRS  # the test pairs only
    run_root = tmp_path / "run"
    assert run_status(run_root)["stages"]["annotate"]["done"] == 0
    done_log = run_root / "annotate" / "done-rank0.jsonl"
    assert not done_log.exists() or not done_log.read_text().strip()
    record = json.loads((run_root / "annotate" / "calibration.json").read_text())
    assert record["accuracy"] == pytest.approx(expected) and record["n_pairs"] == N_PAIRS
    assert record["passed"] is False and record["min_accuracy"] == 0.75
    assert record["protocol"] == "pairwise_excl_ties" and record["weights"] == {
        "clip": 0.05,
        "aesthetic": 0.5,
    }
    assert record["scorer"]["clip"] == "tiny-clip" and "judge" not in record
    assert record["wilson_ci"][0] < expected < record["wilson_ci"][1]

    # Below it: the recorded result passes (nothing of the test set is scored again); the build goes on.
    measured.clear()
    assert main(["build", str(_calibrated_build(tmp_path, data, 0.65)), "-q"]) == 0
    assert not set(measured) & set(CAL_PROMPTS) and set(measured) == set(PROMPTS)
    assert run_status(run_root)["stages"]["annotate"]["done"] == 8
    record = json.loads((run_root / "annotate" / "calibration.json").read_text())
    assert record["passed"] is True
    card = (run_root / "dataset" / "README.md").read_text(encoding="utf-8")
    section = card.split("### Label quality", 1)[1].split("\n#", 1)[0]
    assert f"**{expected:.1%}**" in section and "pickapic_v1_test" in section and "weighted total" in section
    lo, hi = record["wilson_ci"]
    assert f"{lo:.1%}–{hi:.1%}" in section
    page = (run_root / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="label-quality"' in page and "weighted total" in page

    # Other weights are another scorer: the record's key covers them, so the gate measures again.
    from visionprefer.annotate.calibration import calibrate_metrics
    from visionprefer.config import load_config

    text = (tmp_path / "config.yaml").read_text().replace("aesthetic: 0.5}", "aesthetic: 0.4}")
    (tmp_path / "config.yaml").write_text(text.replace("min_accuracy: 0.65", "min_accuracy: 0.0"))
    cfg = load_config(tmp_path / "config.yaml")
    measured.clear()
    assert calibrate_metrics(cfg, open_run(cfg))["weights"] == {"clip": 0.05, "aesthetic": 0.4}
    assert set(measured) == set(CAL_PROMPTS)


def test_the_metrics_gate_is_in_the_estimate_until_it_has_run(tmp_path, fake_llm):
    from visionprefer.annotate.calibration import calibrate_metrics
    from visionprefer.annotate.metrics import QUESTIONS_PER_PROMPT_GUESS
    from visionprefer.estimate import estimate_build

    server = fake_llm(responder="metrics")
    data, _ = _calibration_set(tmp_path)
    gate = f"{{testset: pickapic_v1_test, data: '{data}', pairs: {N_PAIRS}, min_accuracy: 0.0}}"
    cfg = _llm_build(tmp_path, server.base_url, extra=f"calibration: {gate}")
    est = estimate_build(cfg)["llm"]
    questions, vqa = est["calibration-questions"], est["calibration-vqa"]
    assert (questions["calls"], questions["cached"]) == (len(set(CAL_PROMPTS)), 0)  # one per test prompt
    # two images a pair, each asked every question (their number is guessed before they are written)
    assert vqa["calls"] == 2 * N_PAIRS * QUESTIONS_PER_PROMPT_GUESS
    assert not any(r["path"].endswith("/chat/completions") for r in server.requests())  # nothing asked
    calibrate_metrics(cfg, open_run(cfg))
    after = estimate_build(cfg)["llm"]
    assert "calibration-questions" not in after and "calibration-vqa" not in after  # recorded: no more cost
