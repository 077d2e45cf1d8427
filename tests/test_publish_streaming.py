"""The publish stage's bounded-memory helpers: the row encoder, one-pass partitions, prompt-file ranks,
the pair order, and the feedback read along the images."""

from __future__ import annotations

import json
import random

import pytest

from visionprefer.rundir import LogIndex, StoredRecords


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_row_encoder_encodes_as_encode_example():
    from visionprefer.publish.schema import features
    from visionprefer.publish.writer import row_encoder

    feats = features("images")
    row = {name: None for name in feats}
    row.update(
        image={"bytes": b"\x89PNG", "path": "a.png"},
        guidance_scale=7,  # an int in a float column
        metrics={"vqa": 1, "clip": None},
    )
    for name, feat in feats.items():
        if isinstance(feat, dict) and name != "metrics" and row[name] is None:
            row[name] = {k: None for k in feat}
    assert row_encoder(feats)(row) == feats.encode_example(row)
    pairs = features("pairs")
    prow = {name: None for name in pairs}
    prow.update(label_0=1, pair_id="ab", image_0=None)
    assert row_encoder(pairs)(prow) == pairs.encode_example(prow)


def test_partition_is_select_of_each_bucket(tmp_path):
    recs = [{"i": i, "k": i % 3} for i in range(20)]
    stored = StoredRecords.of_file(_jsonl(tmp_path / "r.jsonl", recs))
    parts = stored.partition(lambda r: [r["k"]] + ([3] if r["i"] % 5 == 0 else []), 4)
    for b in range(3):
        assert list(parts[b]) == list(stored.select(lambda r, b=b: r["k"] == b))
    assert [r["i"] for r in parts[3]] == [0, 5, 10, 15]
    from visionprefer.publish.state import partition

    assert [list(p) for p in partition(recs, lambda r: [r["k"]], 3)] == [list(p) for p in parts[:3]]


def test_reading_rank_is_the_position_in_the_file(tmp_path):
    ids = [f"{random.Random(i).getrandbits(80):020x}" for i in range(50)]
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt_id": i} for i in ids] + [{"prompt_id": ids[3]}])
    index = LogIndex([path], "prompt_id")
    assert [index.reading_rank(i) for i in ids] == list(range(50))
    assert index.reading_rank("f" * 20) is None
    assert index.reading_rank(None) is None


def test_pairs_in_row_order_when_the_file_interleaves_prompts(tmp_path):
    from visionprefer.publish.data import _in_row_order

    prompts = ["p2", "p0", "p1"]
    path = _jsonl(tmp_path / "prompts.jsonl", [{"prompt_id": p} for p in prompts])
    rng = random.Random(0)
    pairs = []
    for n in range(60):
        pid = rng.choice([*prompts, "gone"])
        aspect = rng.choice(["overall", "fidelity", "prompt_following"])
        pairs.append(
            {"n": n, "prompt_id": pid, "aspect": aspect, "image_id_0": rng.choice("ab"), "image_id_1": "c"}
        )
    stored = StoredRecords.of_file(_jsonl(tmp_path / "pairs.jsonl", pairs))
    got = [p["n"] for p in _in_row_order(stored, LogIndex([path], "prompt_id"))]
    order = {"prompt_following": 0, "fidelity": 1, "overall": 4}
    position = {p: i for i, p in enumerate(prompts)}
    want = sorted(
        pairs,
        key=lambda p: (
            position.get(p["prompt_id"], 99),
            order[p["aspect"]],
            p["image_id_0"],
            p["image_id_1"],
        ),
    )
    assert got == [p["n"] for p in want]


def test_summary_matches_a_dict_of_feedback():
    from statistics import mean

    from visionprefer.publish.data import feedback_along, summarize_feedback

    images, feedback = [], {}
    for i in range(40):
        rec = {
            "image_id": f"i{i:02d}",
            "prompt_id": f"p{i // 4}",
            "generator_name": "ab"[i % 2],
            "guidance_scale": [3, 7.5][i % 3 == 0],
        }
        images.append(rec)
        if i % 5:
            feedback[rec["image_id"]] = {
                "overall": i / 7,
                "fidelity": {"score": float(i % 4), "explanation": "x"},
                "aesthetic": None,
                "metrics": None,
            }
    s = summarize_feedback(feedback_along(feedback, images, []), sample_prompts=2)
    assert len(s) == len(feedback)
    assert s.columns() == [("overall", "overall"), ("fidelity", "fidelity")]
    assert set(s.samples) == {r["image_id"] for r in images[:8] if r["image_id"] in feedback}
    for g in "ab":
        fbs = [
            feedback[r["image_id"]] for r in images if r["generator_name"] == g and r["image_id"] in feedback
        ]
        assert s.counts["generator_name"][g] == len(fbs)
        assert mean(s.values["generator_name"]["overall"][g]) == mean(f["overall"] for f in fbs)
    assert sum(s.distribution["fidelity"].values()) == len(feedback)


def test_judge_feedback_along_raises_on_rows_it_could_not_place():
    from visionprefer.publish.data import JudgeFeedback

    fb = JudgeFeedback.__new__(JudgeFeedback)
    fb.by_prompt = lambda prompts: iter([("p1", {"a": {"x": 1}}), ("p0", {"b": {"x": 2}})])
    images = [{"prompt_id": "p0", "image_id": "b"}, {"prompt_id": "p1", "image_id": "a"}]
    with pytest.raises(RuntimeError, match="out of row order"):
        list(fb.along(images, []))
    fb.by_prompt = lambda prompts: iter([("p1", {"a": {"x": 1}})])
    assert list(fb.along(images, [])) == [(images[0], None), (images[1], {"x": 1})]
