"""``eval agreement --judge CONFIG``: a build's judge asked about a human test set through the scripted
server, with answers that are a known function of the image (``judge_level``: every aspect scores by the
image's grey level), so that accuracy, each order's result and position consistency under a first-position
bias are worked out by hand below."""

from __future__ import annotations

import io
import json

import pytest

from visionprefer.cli import main
from visionprefer.evaluate import stats

from .conftest import write_config

# Grey levels whose judge_level score on the 1-5 scale is 1..5 (bins of 51.2 levels; mid-bin, so that JPEG
# rounding cannot move them).
LEVEL = {1: 25, 2: 76, 3: 128, 4: 179, 5: 230}

# Pick-a-Pic rows: (score of image 0, score of image 1, label_0). label_0 1 = image 0 preferred, 0.5 = a tie.
ROWS = {
    "r0": (1, 4, 0.0),
    "r1": (3, 3, 1.0),
    "r2": (2, 3, 0.0),
    "r3": (4, 3, 0.0),
    "r4": (5, 5, 1.0),
    "r5": (5, 2, 1.0),
    "r6": (1, 2, 0.5),  # a human tie: pairwise_excl_ties skips it, so it is never asked
    "r7": (4, 5, 1.0),
}
# By hand, with bias +1 on the image shown first (capped at 5); listed = image 0 first, reversed = image 1
# first; the build's score of an image is its mean over the two orders (bias +0.5 each, unless capped).
#   row  listed     reversed   mean          human  mean   listed  reversed  both agree  consistent
#   r0   2<4 -> 1   1<5 -> 1   1.5<4.5 -> 1  1      right  right   right     1 right     yes
#   r1   4>3 -> 0   3<4 -> 1   3.5=3.5 tie   0      tie    right   wrong     tie         no
#   r2   3=3 tie    2<4 -> 1   2.5<3.5 -> 1  1      right  tie     right     tie         no
#   r3   5>3 -> 0   4=4 tie    4.5>3.5 -> 0  1      wrong  wrong   tie       tie         no
#   r4   5=5 tie    5=5 tie    5=5 tie       0      tie    tie     tie       tie         yes (tie, tie)
#   r5   5>2 -> 0   5>3 -> 0   5>2.5 -> 0    0      right  right   right     0 right     yes
#   r7   5=5 tie    4<5 -> 1   4.5<5 -> 1    0      wrong  tie     wrong     tie         no
DECISIVE = 7
BIASED = {
    "mean": (3, 2),  # (correct, predicted ties)
    "listed": (3, 3),
    "reversed": (3, 2),
    "both_agree": (2, 5),
    "consistent": 3,
}
# Unbiased: every order says what the mean says: r0, r2, r5 right; r1, r4 tied; r3, r7 wrong.
UNBIASED = {"correct": 3, "ties": 2}


def _grey(level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (level, level, level)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def pickapic_greys(tmp_path):
    """A Pick-a-Pic test parquet (caption, jpg_0, jpg_1, label_0, label_1, ranking_id) of grey images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "ranking_id": key,
            "caption": f"a grey square {key}",
            "jpg_0": _grey(LEVEL[s0]),
            # two images of one score differ by a few grey levels (same bin): otherwise both orders of the
            # row are one request, answered once or twice depending on whether they overlap in flight
            "jpg_1": _grey(LEVEL[s1] + (8 if s0 == s1 else 0)),
            "label_0": label,
            "label_1": 1.0 - label,
        }
        for key, (s0, s1, label) in ROWS.items()
    ]
    folder = tmp_path / "pickapic" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "test_unique-00000-of-00001.parquet")
    return tmp_path / "pickapic"


def _judge_config(tmp_path, base_url: str, *, judge: str = "both_orders: true", name="judge.yaml", llm=""):
    return write_config(
        tmp_path,
        f"""\
        run_dir: {tmp_path / "unused-run"}
        prompts:
          sources: [{{path: prompts.txt}}]
        generate:
          generators: [{{preset: tiny-sd15}}]
        annotate:
          backend: judge
          judge:
            image_max_side: 64
            {judge}
            llm:
              model: gpt-4o-2024-08-06
              base_url: {base_url}
              concurrency: 4
              timeout_s: 5
              backoff_s: 0.01
              {llm}
        """,
        name=name,
    )


def _eval(testset: str, data, config, out, *extra: str) -> int:
    return main(
        ["eval", "agreement", "--testset", testset, "--data", str(data), "--judge", str(config),
         "--bootstrap", "20", "--out", str(out), *extra]
    )  # fmt: skip


def _chats(server) -> int:
    return sum(1 for r in server.requests() if r["path"].endswith("/chat/completions"))


def _usage_records(out) -> int:
    return sum(len(p.read_text().splitlines()) for p in (out / "llm").glob("usage-rank*.jsonl"))


def test_biased_judge_in_both_orders_gives_the_position_consistency_worked_out_by_hand(
    tmp_path, fake_llm, pickapic_greys, capsys
):
    server = fake_llm(responder="judge_level_biased")
    config = _judge_config(tmp_path, server.base_url)
    out = tmp_path / "out"
    assert _eval("pickapic_v1_test", pickapic_greys, config, out) == 0
    printed = capsys.readouterr().out
    # the estimate came first: 7 decisive pairs x 2 orders, none answered yet
    assert printed.index("agreement judge: 14 calls (0 already answered)") < printed.index("accuracy")
    assert _chats(server) == 2 * DECISIVE  # the human tie r6 was not asked

    summary = json.loads((out / "agreement_summary.json").read_text())
    r = summary["result"]
    assert r["protocol"] == "pairwise_excl_ties" and r["n_pairs"] == DECISIVE
    assert r["human_ties"] == 1 and r["skipped_pairs"] == 0  # r6: left out by the protocol, not skipped
    correct, ties = BIASED["mean"]
    assert r["value"] == pytest.approx(correct / DECISIVE) and r["correct"] == correct
    assert r["predicted_ties"] == ties
    assert r["wilson_ci"] == pytest.approx(stats.wilson_interval(correct, DECISIVE))
    orders = r["extra"]["orders"]
    for name in ("listed", "reversed", "both_agree"):
        correct, ties = BIASED[name]
        assert (orders[name]["correct"], orders[name]["predicted_ties"]) == (correct, ties), name
        assert orders[name]["value"] == pytest.approx(correct / DECISIVE), name
    pc = r["position_consistency"]
    assert (pc["pairs"], pc["consistent"]) == (DECISIVE, BIASED["consistent"])
    assert pc["rate"] == pytest.approx(3 / 7) and pc["wilson_ci"] == pytest.approx(
        stats.wilson_interval(3, 7)
    )
    # every aspect scores the same here, so each alone agrees as the overall score does
    assert r["extra"]["judge_aspects"] == pytest.approx(dict.fromkeys(
        ("prompt_following", "fidelity", "aesthetic", "harmlessness"), 3 / 7))  # fmt: skip
    assert "position consistency 42.86% of 7 pairs" in printed and "order listed: 42.86%" in printed
    judge = summary["judge"]
    assert judge["requests"] == 14 and judge["unanswered"] == 0 and judge["new_attempts"] == 14
    assert judge["items_not_asked"] == 1
    assert judge["both_orders"] is True and judge["model"] == "gpt-4o-2024-08-06"
    assert summary["input_sha256"]["judge_config"] and judge["usd"] > 0
    records = _usage_records(out)
    assert records == 14

    # A rerun answers from the cache: the estimate says so, nothing reaches the server or the usage log.
    assert _eval("pickapic_v1_test", pickapic_greys, config, out) == 0
    assert "agreement judge: 0 calls (14 already answered)" in capsys.readouterr().out
    assert _chats(server) == 14 and _usage_records(out) == records
    again = json.loads((out / "agreement_summary.json").read_text())
    assert again["judge"]["new_attempts"] == 0 and again["result"]["value"] == r["value"]


def test_unbiased_judge_is_position_consistent(tmp_path, fake_llm, pickapic_greys):
    server = fake_llm(responder="judge_level")
    out = tmp_path / "out"
    assert _eval("pickapic_v1_test", pickapic_greys, _judge_config(tmp_path, server.base_url), out) == 0
    r = json.loads((out / "agreement_summary.json").read_text())["result"]
    assert r["position_consistency"]["rate"] == 1.0 and r["position_consistency"]["pairs"] == DECISIVE
    assert (r["correct"], r["predicted_ties"]) == (UNBIASED["correct"], UNBIASED["ties"])
    for name in ("listed", "reversed", "both_agree"):
        assert r["extra"]["orders"][name]["correct"] == UNBIASED["correct"], name


def test_a_judge_run_makes_a_valid_leaderboard_entry(tmp_path, fake_llm, pickapic_greys):
    from visionprefer.leaderboard import validate_submission

    server = fake_llm(responder="judge_level")
    out = tmp_path / "out"
    config = _judge_config(tmp_path, server.base_url)
    sub = out / "submission.json"
    assert (
        _eval(
            "pickapic_v1_test", pickapic_greys, config, out, "--bootstrap", "1000", "--submission", str(sub)
        )
        == 0
    )
    entry = json.loads(sub.read_text())["benchmarks"]["agreement/pickapic_v1_test"]
    assert entry["evaluators"] == {"judge": "gpt-4o-2024-08-06"}  # the judge's model names the candidate
    s = entry["summary"]
    assert s["candidate"] == {"source": "judge"} and set(s["input_sha256"]) == {"judge_config"}
    assert (s["correct"], s["n_pairs"]) == (UNBIASED["correct"], DECISIVE)
    assert s["position_consistency"]["rate"] == 1.0
    validate_submission(sub)


def test_groups_of_three_are_one_request_and_missing_images_are_counted(tmp_path, fake_llm):
    """ImageReward's test.json layout (id, prompt, generations, ranking; images in test_images/): one
    request per prompt shows all its images, the biased first image included."""
    from PIL import Image

    root = tmp_path / "ir" / "data"
    images = tmp_path / "ir" / "data" / "test_images"
    rows = [  # scores per image by level, human ranking (1 = best)
        ("g0", (2, 4, 3), [3, 1, 2]),
        ("g1", (3, 1, 5), [2, 2, 1]),
        ("g2", (1, 2), [1, 1]),  # human ties only: not asked
        ("g3", (1, 5, None), [2, 1, 3]),  # image 2 missing from the copy
    ]
    data = []
    for key, scores, ranking in rows:
        names = []
        for i, s in enumerate(scores):
            names.append(f"{key}/{i}.png")
            if s is not None:
                (images / key).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (LEVEL[s],) * 3).save(images / key / f"{i}.png")
        data.append({"id": key, "prompt": f"prompt {key}", "generations": names, "ranking": ranking})
    (root / "test.json").write_text(json.dumps(data))
    # By hand, bias +1 on image 0 (shown first), one order:
    #   g0: 3, 4, 3 -> (0,1) 1 right, (0,2) tie wrong, (1,2) 1 right
    #   g1: 4, 1, 5 -> (0,1) human tie, (0,2) 2 right, (1,2) 2 right
    #   g3: 2, 5, - -> (0,1) 1 right; (0,2), (1,2) skipped
    server = fake_llm(responder="judge_level_biased")
    out = tmp_path / "out"
    assert _eval("imagereward_test", root, _judge_config(tmp_path, server.base_url, judge=""), out) == 0
    assert _chats(server) == 3  # g0, g1, g3: one request each
    r = json.loads((out / "agreement_summary.json").read_text())["result"]
    assert r["protocol"] == "imagereward_micro"
    assert (r["n_pairs"], r["correct"], r["predicted_ties"]) == (6, 5, 1)
    # skipped: g3's two pairs with its missing image; images without a score: that one and g2's two
    assert r["skipped_pairs"] == 2 and r["missing_images"] == 3 and r["human_ties"] == 2
    assert r["position_consistency"] is None and "orders" not in r["extra"]


def test_budget_stop_is_one_line_and_keeps_the_answers(tmp_path, fake_llm, pickapic_greys, capsys):
    server = fake_llm(responder="judge_level_biased")
    # what one call costs here, measured on a separate folder
    probe = tmp_path / "probe"
    assert _eval("pickapic_v1_test", pickapic_greys, _judge_config(tmp_path, server.base_url), probe) == 0
    per_call = json.loads((probe / "agreement_summary.json").read_text())["judge"]["usd"] / 14
    capsys.readouterr()
    tight = _judge_config(
        tmp_path, server.base_url, name="tight.yaml", llm=f"max_cost_usd: {5 * per_call:.8f}"
    )
    out = tmp_path / "out"
    assert _eval("pickapic_v1_test", pickapic_greys, tight, out) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_cost_usd" in err[0]
    assert not (out / "agreement_summary.json").exists()
    answered = _chats(server) - 14
    assert 1 <= answered < 14
    # with the budget lifted, only the rest is asked and the result is the one worked out by hand
    assert _eval("pickapic_v1_test", pickapic_greys, _judge_config(tmp_path, server.base_url), out) == 0
    assert _chats(server) - 14 == 14
    r = json.loads((out / "agreement_summary.json").read_text())["result"]
    assert r["position_consistency"]["consistent"] == BIASED["consistent"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("visionprefer: error:"), err
    return err[0]


def test_bad_input_is_one_line_before_any_call(tmp_path, fake_llm, pickapic_greys, capsys):
    server = fake_llm(responder="judge_level")
    out = tmp_path / "out"
    no_judge = write_config(
        tmp_path,
        "run_dir: run\nprompts:\n  sources: [{path: p.txt}]\ngenerate:\n  generators: [{preset: tiny-sd15}]\n",
        name="plain.yaml",
    )
    assert _eval("pickapic_v1_test", pickapic_greys, no_judge, out) != 0
    assert "no annotate.judge section" in _one_line_error(capsys)

    local = _judge_config(tmp_path, server.base_url, judge="backend: local", name="local.yaml",
                          llm="structured_output: json_object")  # fmt: skip
    assert _eval("pickapic_v1_test", pickapic_greys, local, out) != 0
    assert "structured_output" in _one_line_error(capsys)

    ir = tmp_path / "ir"
    ir.mkdir()
    (ir / "test.json").write_text(
        json.dumps([{"id": "a", "prompt": "p", "generations": ["a/0.png", "a/1.png"], "ranking": [1, 2]}])
    )  # the annotations without test_images/
    assert _eval("imagereward_test", ir, _judge_config(tmp_path, server.base_url), out) != 0
    assert "no image found" in _one_line_error(capsys)
    assert _chats(server) == 0 and not (out / "llm").exists()


def test_the_in_process_local_judge_answers_every_pair_and_the_same_again(tmp_path, pickapic_greys):
    """``--judge`` with ``backend: local`` (tiny-vlm under constrained decoding): every counted pair is
    asked once per order, every answer is schema-valid, and a second run gives the same scores (greedy
    decoding), so the same agreement."""
    local = "backend: local\n            both_orders: true\n            local: {model: tiny-vlm, max_explanation_chars: 16, batch_size: 4}"
    config = _judge_config(tmp_path, "http://127.0.0.1:9/v1", judge=local)
    results = []
    for run in ("first", "second"):
        out = tmp_path / run
        assert _eval("pickapic_v1_test", pickapic_greys, config, out) == 0
        summary = json.loads((out / "agreement_summary.json").read_text())
        judge, r = summary["judge"], summary["result"]
        assert judge["backend"] == "local" and judge["requests"] == 2 * DECISIVE and judge["unanswered"] == 0
        assert r["n_pairs"] == DECISIVE and r["skipped_pairs"] == 0  # every pair scored in both orders
        assert r["position_consistency"]["pairs"] == DECISIVE
        pc = r["position_consistency"]
        results.append((r["correct"], r["predicted_ties"], pc["consistent"], r["extra"]["orders"]))
    assert results[0] == results[1]


def _eval_pairwise(data, out, base_url, *extra: str) -> int:
    return main(
        ["eval", "agreement", "--testset", "pickapic_v1_test", "--data", str(data), "--pairwise-judge",
         "gpt-4o-2024-08-06", "--base-url", base_url, "--api-key-env", "VP_TEST_KEY", "--bootstrap", "20",
         "--out", str(out), *extra]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("responder", "correct", "ties", "consistent"),
    [
        # by the grey bins of ROWS: r0, r2, r5 right; r1, r4 the same bin (a tie, wrong); r3, r7 wrong;
        # a fair judge answers both orders alike
        ("pairwise_level", UNBIASED["correct"], UNBIASED["ties"], DECISIVE),
        # "A" whatever is shown: each order names the other image, so every pair is a tie and none consistent
        ("pairwise_biased", 0, DECISIVE, 0),
    ],
)
def test_pairwise_judge_in_both_orders(
    tmp_path, fake_llm, pickapic_greys, capsys, monkeypatch, responder, correct, ties, consistent
):
    monkeypatch.setenv("VP_TEST_KEY", "sk-test")
    server = fake_llm(responder=responder)
    out = tmp_path / "out"
    assert _eval_pairwise(pickapic_greys, out, server.base_url) == 0
    printed = capsys.readouterr().out
    assert printed.index("agreement pairwise judge: 14 calls (0 already answered)") < printed.index(
        "accuracy"
    )
    assert _chats(server) == 2 * DECISIVE  # the human tie r6 is never asked
    summary = json.loads((out / "agreement_summary.json").read_text())
    r = summary["result"]
    assert (r["n_pairs"], r["correct"], r["predicted_ties"]) == (DECISIVE, correct, ties)
    assert r["value"] == pytest.approx(correct / DECISIVE)
    pc = r["position_consistency"]
    assert (pc["pairs"], pc["consistent"]) == (DECISIVE, consistent)
    assert summary["candidate"] == {"kind": "judge", "source": "pairwise", "id": "gpt-4o-2024-08-06"}
    # A rerun answers from the cache.
    assert _eval_pairwise(pickapic_greys, out, server.base_url) == 0
    assert "agreement pairwise judge: 0 calls (14 already answered)" in capsys.readouterr().out
    assert _chats(server) == 2 * DECISIVE


def test_pairwise_judge_submission_validates(tmp_path, fake_llm, pickapic_greys, monkeypatch):
    from visionprefer.leaderboard import validate_submission

    monkeypatch.setenv("VP_TEST_KEY", "sk-test")
    server = fake_llm(responder="pairwise_level")
    out = tmp_path / "out"
    sub = out / "submission.json"
    assert (
        _eval_pairwise(pickapic_greys, out, server.base_url, "--bootstrap", "1000", "--submission", str(sub))
        == 0
    )
    entry = json.loads(sub.read_text())["benchmarks"]["agreement/pickapic_v1_test"]
    assert entry["evaluators"] == {"judge": "gpt-4o-2024-08-06"} and entry["summary"]["input_sha256"] == {}
    validate_submission(sub)
