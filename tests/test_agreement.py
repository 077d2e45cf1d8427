"""Agreement with human test sets: loaders on fixtures in each set's published format, protocol arithmetic
computed by hand, intervals against evaluate/stats.py, correlations against scipy.stats. Offline, no models."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from visionprefer.errors import ConfigError, SourceError
from visionprefer.evaluate import stats
from visionprefer.evaluate.agreement import (
    PROTOCOLS,
    Verdict,
    agreement,
    format_agreement,
    kendall_tau_b,
    load_scores,
    load_verdicts,
    spearman,
)
from visionprefer.evaluate.testsets import (
    LOADERS,
    TESTSETS,
    load_hpdv2_test,
    load_hpdv3_test,
    load_mjbench,
    load_pickapic,
    load_testset,
    load_tifa160,
)
from visionprefer.evaluate.testsets import testset_spec as spec_of

# ---------------------------------------------------------------------------------------------------
# Fixtures in the published formats


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def imagereward_dir(tmp_path):
    """data/test.json of THUDM/ImageReward: id, prompt, generations, ranking (1 = best, ties, gaps)."""
    rows = [
        {
            "id": "000001-0001",
            "prompt": "a",
            "generations": [f"p1/{i}.webp" for i in range(4)],
            "ranking": [1, 2, 2, 4],
        },
        {"id": "000001-0002", "prompt": "b", "generations": ["p2/0.webp", "p2/1.webp"], "ranking": [2, 1]},
        {
            "id": "000001-0003",
            "prompt": "c",
            "generations": [f"p3/{i}.webp" for i in range(3)],
            "ranking": [1, 2, 5],
        },
        {
            "id": "000001-0004",
            "prompt": "d",
            "generations": [f"p4/{i}.webp" for i in range(3)],
            "ranking": [1, 2, 3],
        },
        {"id": "000001-0005", "prompt": "e", "generations": ["p5/0.webp", "p5/1.webp"], "ranking": [1, 1]},
    ]
    _write(tmp_path / "data" / "test.json", rows)
    # scores in the format ImageReward's test.py writes (test_<model>.json: id, prompt, ranking, rewards)
    rewards = {
        "000001-0001": [4, 3, 1, 2],  # 5 decisive pairs, 4 right ((2,3) wrong), 1 human tie
        "000001-0002": [5, 5],  # a predicted tie on a decisive pair: wrong
        "000001-0003": [3, 1, 2],  # (0,1) right, (0,2) right, (1,2) wrong
        "000001-0004": [2, 1, None],  # image 2 unscored: (0,1) right, two pairs skipped
        "000001-0005": [1, 2],  # human tie only: no decisive pair
    }
    _write(
        tmp_path / "test_model.json",
        [{"id": k, "prompt": "", "ranking": [], "rewards": v} for k, v in rewards.items()],
    )
    return tmp_path


def test_imagereward_loader_reads_published_format(imagereward_dir):
    items = load_testset("imagereward_test", imagereward_dir / "data")
    assert [i.item_id for i in items][:2] == ["000001-0001", "000001-0002"]
    assert items[0].ranking == (1, 2, 2, 4)
    assert items[0].images[0] == str(imagereward_dir / "data" / "test_images" / "p1/0.webp")
    assert len(items[2].images) == 3


def test_micro_and_macro_differ_on_crafted_fixture(imagereward_dir):
    items = load_testset("imagereward_test", imagereward_dir / "data" / "test.json")
    scores = load_scores(imagereward_dir / "test_model.json")
    micro = agreement(items, scores, "imagereward_micro", testset="imagereward_test", n_bootstrap=200)
    macro = agreement(items, scores, "hpsv2_macro", testset="imagereward_test", n_bootstrap=200)
    # micro: (4 + 0 + 2 + 1) / (5 + 1 + 3 + 1)
    assert micro.value == pytest.approx(7 / 10)
    assert (micro.correct, micro.n_pairs) == (7, 10)
    # macro: mean of 4/5, 0/1, 2/3, 1/1; the all-tie prompt is left out
    assert macro.value == pytest.approx((4 / 5 + 0 + 2 / 3 + 1) / 4)
    assert micro.value != pytest.approx(macro.value)
    for r in (micro, macro):
        assert r.human_ties == 2  # one in prompt 1, one in prompt 5
        assert r.predicted_ties == 1 and r.tie_rate == pytest.approx(1 / 10)
        assert r.skipped_pairs == 2 and r.missing_images == 1
        assert r.items_used == 4 and r.items_skipped == 1
    assert micro.wilson_ci == stats.wilson_interval(7, 10)
    assert macro.wilson_ci is None  # a mean of per-prompt accuracies is not a binomial proportion


def test_reference_implementation_of_imagereward_acc(imagereward_dir):
    """ImageReward test.py's acc(), re-derived independently: pooled pairs, tie rules as published."""
    rows = json.loads((imagereward_dir / "data" / "test.json").read_text())
    rewards = {r["id"]: r["rewards"] for r in json.loads((imagereward_dir / "test_model.json").read_text())}
    total = true = 0
    for row in rows:
        rank, rew = row["ranking"], rewards[row["id"]]
        for i in range(len(rank)):
            for j in range(i + 1, len(rank)):
                if rew[i] is None or rew[j] is None or rank[i] == rank[j]:
                    continue
                total += 1
                true += (rank[i] > rank[j] and rew[i] < rew[j]) or (rank[i] < rank[j] and rew[i] > rew[j])
    items = load_testset("imagereward_test", imagereward_dir / "data")
    result = agreement(
        items, load_scores(imagereward_dir / "test_model.json"), "imagereward_micro", n_bootstrap=0
    )
    assert result.value == pytest.approx(true / total)
    assert result.bootstrap_ci is None


def test_hpsv2_ranking_protocol(tmp_path):
    rows = [
        {"prompt": "x", "image_path": ["a.jpg", "b.jpg", "c.jpg"], "rank": [1, 2, 3], "raw_annotations": []},
        {"prompt": "y", "image_path": ["d.jpg", "e.jpg", "f.jpg"], "rank": [1, 1, 2]},
        {"prompt": "z", "image_path": ["g.jpg", "h.jpg"], "rank": [2, 1]},
    ]
    items = load_hpdv2_test(_write(tmp_path / "HPD" / "test.json", rows))
    assert items[0].images[0] == str(tmp_path / "HPD" / "test" / "a.jpg")
    assert items[0].meta == {"raw_annotations": []}
    scores = {
        ("0", 0): 3,
        ("0", 1): 1,
        ("0", 2): 2,
        ("1", 0): 1,
        ("1", 1): 2,
        ("1", 2): 3,
        ("2", 0): 7,
        ("2", 1): 7,
    }
    result = agreement(items, scores, "hpsv2_ranking", n_bootstrap=100)
    # prompt 0: 1 discordant of 3; prompt 1: the human tie is not discordant, 2 of 3; prompt 2: tie = discordant
    assert result.value == pytest.approx(((1 - 1 / 3) + (1 - 2 / 3) + 0) / 3)

    def inversion_score(p1, p2):  # HPS v2 training/train.py, as published
        n, cnt = len(p1), 0
        for i in range(n - 1):
            for j in range(i + 1, n):
                cnt += (p1[i] > p1[j] and p2[i] < p2[j]) or (p1[i] < p1[j] and p2[i] > p2[j])
        return 1 - cnt / (n * (n - 1) / 2)

    for k in (0, 1):  # prompts without tied scores: same as the official argsort + inversion_score
        s = np.array([scores[(str(k), i)] for i in range(3)], dtype=float)
        order = list(np.argsort(-s))
        hps_ranking = [order.index(j) for j in range(3)]
        single = agreement([items[k]], scores, "hpsv2_ranking", n_bootstrap=0)
        assert single.value == pytest.approx(inversion_score(hps_ranking, rows[k]["rank"]))


# ---------------------------------------------------------------------------------------------------
# Pairwise sets


@pytest.fixture
def pickapic_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0]
    table = pa.table(
        {
            "ranking_id": [f"r{i}" for i in range(6)],
            "caption": [f"prompt {i}" for i in range(6)],
            "jpg_0": [b"\x00"] * 6,
            "jpg_1": [b"\x01"] * 6,
            "label_0": labels,
            "label_1": [1 - v for v in labels],
        }
    )
    folder = tmp_path / "pickapic" / "data"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "test_unique-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 1), folder / "validation_unique-00000-of-00001.parquet")
    return tmp_path / "pickapic"


PICK_SCORES = {  # (score of image 0, score of image 1) per row
    "r0": (2, 1),  # label 1: right
    "r1": (1, 2),  # label 0: right
    "r2": (1, 2),  # human tie
    "r3": (1, 2),  # label 1: wrong
    "r4": (3, 3),  # predicted tie: wrong
    "r5": (0, 5),  # label 0: right
}


def _pick_scores():
    return {(k, i): v[i] for k, v in PICK_SCORES.items() for i in (0, 1)}


def test_pickapic_excluding_ties_and_intervals_match_stats(pickapic_parquet):
    items = load_pickapic(pickapic_parquet, split="test_unique")
    assert len(items) == 6 and items[0].images == ("r0/0", "r0/1")  # no image bytes unless asked
    assert load_pickapic(pickapic_parquet, split="test_unique", with_images=True)[0].images == (
        b"\x00",
        b"\x01",
    )
    result = agreement(items, _pick_scores(), "pairwise_excl_ties", n_bootstrap=500, seed=3)
    assert result.value == pytest.approx(3 / 5)
    assert result.human_ties == 1 and result.predicted_ties == 1
    assert result.wilson_ci == stats.wilson_interval(3, 5, 0.95)
    # one pair per item: the item bootstrap is win_rate_summary's on the +1/-1 outcomes of decisive pairs
    reference = stats.win_rate_summary([1, 1, -1, -1, 1], n_bootstrap=500, seed=3)
    assert result.bootstrap_ci == pytest.approx(reference.bootstrap_ci)
    assert reference.win_rate == pytest.approx(result.value)


def test_pickscore_tie_credit_matches_pickscore_code(pickapic_parquet):
    """PickScore eval_preference_predictor.py re-derived: softmax, |p1 - p0| <= threshold is a tie, credit
    1 / 0.5 / 0 over every row (human ties included)."""
    items = load_pickapic(pickapic_parquet, split="test_unique")
    labels = {"r0": 1.0, "r1": 0.0, "r2": 0.5, "r3": 1.0, "r4": 1.0, "r5": 0.0}
    for threshold in (0.0, 0.3, 0.5, 0.99):
        credit = []
        for k, (s0, s1) in PICK_SCORES.items():
            p0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
            p1 = 1 - p0
            pred = "tie" if abs(p1 - p0) <= threshold else ("0" if p0 > p1 else "1")
            label = "tie" if labels[k] == 0.5 else ("0" if labels[k] == 1 else "1")
            credit.append(1 if label == pred else 0.5 if "tie" in (label, pred) else 0)
        result = agreement(
            items, _pick_scores(), "pickscore_tie_credit", tie_tolerance=threshold, n_bootstrap=0
        )
        assert result.value == pytest.approx(sum(credit) / len(credit)), threshold
    assert agreement(items, _pick_scores(), "pickscore_tie_credit", n_bootstrap=0).value == pytest.approx(
        4 / 6
    )


def test_visionprefer_pairs_rows_per_aspect():
    rows = [
        {
            "pair_id": "a",
            "prompt": "p",
            "image_id_0": "i0",
            "image_id_1": "i1",
            "label_0": 1.0,
            "aspect": "aesthetic",
        },
        {
            "pair_id": "b",
            "prompt": "p",
            "image_id_0": "i2",
            "image_id_1": "i3",
            "label_0": 0.0,
            "aspect": "aesthetic",
        },
        {
            "pair_id": "c",
            "prompt": "q",
            "image_id_0": "i4",
            "image_id_1": "i5",
            "label_0": 1.0,
            "aspect": "fidelity",
        },
    ]
    items = load_pickapic(rows)
    assert items[0].image_ids == ("i0", "i1")
    scores = {"i0": 1.0, "i1": 0.0, "i2": 1.0, "i3": 0.0, "i4": 0.0, "i5": 1.0}  # keyed by image id
    result = agreement(items, scores, "pairwise_excl_ties", n_bootstrap=0)
    assert result.value == pytest.approx(1 / 3)
    assert result.per_aspect["aesthetic"]["value"] == pytest.approx(1 / 2)
    assert result.per_aspect["aesthetic"]["wilson_ci"] == stats.wilson_interval(1, 2)
    assert result.per_aspect["fidelity"]["value"] == 0.0
    assert len(load_pickapic(rows, aspect="fidelity")) == 1


def test_hpdv3_loader_and_callable_scorer_with_missing_images(tmp_path):
    from PIL import Image

    root = tmp_path / "HPDv3"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 4)).save(root / "images" / "big.png")
    Image.new("RGB", (2, 4)).save(root / "images" / "small.png")
    rows = [
        {
            "prompt": "p",
            "path1": "images/big.png",
            "path2": "images/small.png",
            "model1": "m1",
            "model2": "m2",
        },
        {"prompt": "q", "path1": "images/small.png", "path2": "images/big.png"},
        {"prompt": "r", "path1": "images/gone.png", "path2": "images/big.png"},
    ]
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    items = load_hpdv3_test(root / "test.jsonl")
    assert items[0].ranking == (1.0, 2.0) and items[0].meta == {"model1": "m1", "model2": "m2"}

    class WidthScorer:  # a visionprefer-style scorer: .score(prompts, images) -> array
        calls = 0

        def score(self, prompts, images):
            WidthScorer.calls += 1
            return np.array([im.size[0] for im in images], dtype=float)

    result = agreement(items, WidthScorer(), "pairwise_excl_ties", testset="hpdv3_test", n_bootstrap=0)
    assert result.value == pytest.approx(1 / 2)  # row 0 right, row 1 wrong, row 2 skipped
    assert result.skipped_pairs == 1 and result.missing_images == 1 and result.items_skipped == 1
    assert WidthScorer.calls == 3
    same = agreement(items, lambda item: [1.0, 0.0], "pairwise_excl_ties", n_bootstrap=0)  # plain callable
    assert same.value == 1.0


def test_mjbench_with_and_without_ties(tmp_path):
    bench = tmp_path / "alignment" / "benchmark"
    _write(
        bench / "actions" / "actions_test.json",
        [
            {
                "id": "pap_1",
                "source": "pick_a_pic",
                "caption": "c1",
                "image0": "a.jpg",
                "image1": "b.jpg",
                "label": 0,
            },
            {
                "id": "pap_2",
                "source": "pick_a_pic",
                "caption": "c2",
                "image0": "c.jpg",
                "image1": "d.jpg",
                "label": 1,
            },
            {
                "id": "pap_3",
                "source": "pick_a_pic",
                "caption": "c3",
                "image0": "e.jpg",
                "image1": "f.jpg",
                "label": 0,
            },
        ],
    )
    _write(  # a per-source file: its pairs are already in actions_test.json
        bench / "actions" / "pap_actions_test.json",
        [
            {
                "id": "pap_1",
                "source": "pick_a_pic",
                "caption": "c1",
                "image0": "a.jpg",
                "image1": "b.jpg",
                "label": 0,
            }
        ],
    )
    _write(
        bench / "spatial" / "spatial_test.json",
        [
            {
                "id": "pap_1",
                "source": "pick_a_pic",
                "caption": "s",
                "image0": "g.jpg",
                "image1": "h.jpg",
                "label": 1,
            }
        ],
    )
    items = load_mjbench(bench)
    assert [i.item_id for i in items] == ["actions/pap_1", "actions/pap_2", "actions/pap_3", "spatial/pap_1"]
    assert items[1].ranking == (2.0, 1.0) and items[0].aspect == "actions"
    assert items[0].images[0] == str(bench / "actions" / "a.jpg")
    scores = {
        ("actions/pap_1", 0): 2.0, ("actions/pap_1", 1): 1.0,  # right
        ("actions/pap_2", 0): 1.0, ("actions/pap_2", 1): 1.0,  # predicted tie
        ("actions/pap_3", 0): 0.0, ("actions/pap_3", 1): 1.0,  # wrong
        ("spatial/pap_1", 0): 0.0, ("spatial/pap_1", 1): 1.0,  # right
    }  # fmt: skip
    result = agreement(items, scores, "mjbench", n_bootstrap=0)
    assert result.extra["accuracy_with_ties"] == pytest.approx(2 / 4) == result.value
    assert result.extra["accuracy_without_ties"] == pytest.approx(2 / 3)
    assert result.per_aspect["actions"]["accuracy_with_ties"] == pytest.approx(1 / 3)
    assert result.per_aspect["actions"]["accuracy_without_ties"] == pytest.approx(1 / 2)
    assert result.per_aspect["spatial"]["value"] == 1.0
    # threshold as MJ-Bench's get_pred: |s0 - s1| <= threshold is a tie
    wide = agreement(items, scores, "mjbench", tie_tolerance=1.0, n_bootstrap=0)
    assert wide.predicted_ties == 4 and wide.value == 0.0


# ---------------------------------------------------------------------------------------------------
# TIFA160 correlations


@pytest.fixture
def tifa_file(tmp_path):
    data = {}
    human = {"t1": [5.0, 3.0, 3.0], "t2": [1.0, 4.5, 2.0], "t3": [2.0, 2.0, 5.0]}
    for text_id, values in human.items():
        for g, v in zip(("mini_dalle", "sd_v1_5", "vq_diffusion"), values, strict=True):
            data[f"{text_id}_{g}"] = {
                "text_id": text_id,
                "image_path": f"{text_id}_{g}.jpg",
                "text": f"caption {text_id}",
                "human_scores": [v, v],
                "human_avg": v,
            }
    return _write(tmp_path / "human_annotations" / "human_annotations.json", data)


def test_tifa160_correlations_match_scipy(tifa_file):
    from scipy.stats import kendalltau, pearsonr, spearmanr

    items = load_tifa160(tifa_file)
    assert [i.item_id for i in items] == ["t1", "t2", "t3"]
    assert items[0].image_ids == ("t1_mini_dalle", "t1_sd_v1_5", "t1_vq_diffusion")
    predicted = [0.9, 0.5, 0.6, 0.1, 0.5, 0.2, 0.3, 0.3, 0.8]  # ties on both sides
    scores = {iid: p for iid, p in zip([i for it in items for i in it.image_ids], predicted, strict=True)}
    result = agreement(items, scores, "tifa_correlation", testset="tifa160", n_bootstrap=100)
    human = [v for it in items for v in it.likert]
    assert result.extra["spearman"] == pytest.approx(spearmanr(human, predicted).statistic)
    assert result.extra["kendall_tau_b"] == pytest.approx(kendalltau(human, predicted).statistic)  # tau-b
    assert result.extra["pearson"] == pytest.approx(pearsonr(human, predicted).statistic)
    assert result.value == result.extra["spearman"] and result.extra["images"] == 9
    assert result.bootstrap_ci is not None
    text = format_agreement(result)
    assert "Spearman rho" in text and "Kendall tau-b" in text and "TIFA (mPLUG-large)" in text


def test_correlation_helpers_match_scipy_on_random_data():
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, 700).astype(float)  # Likert-like: many ties, more than one chunk
    y = np.round(x + rng.normal(0, 1.5, 700), 1)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# Judges asked in both orders


def test_position_consistency_from_both_orders(tmp_path, pickapic_parquet):
    items = load_pickapic(pickapic_parquet, split="test_unique")
    verdicts = [
        {"item_id": "r0", "image_a": 0, "image_b": 1, "answer": "A"},  # image 0 in both orders: right
        {"item_id": "r0", "image_a": 1, "image_b": 0, "answer": "B"},
        {"item_id": "r1", "image_a": 0, "image_b": 1, "answer": "A"},  # always the first position: a tie
        {"item_id": "r1", "image_a": 1, "image_b": 0, "answer": "A"},
        {"item_id": "r2", "image_a": 0, "image_b": 1, "answer": "tie"},  # human tie, tie in both orders
        {"item_id": "r2", "image_a": 1, "image_b": 0, "answer": "tie"},
        {"item_id": "r3", "image_a": 0, "image_b": 1, "answer": "B"},  # image 1 in both orders: wrong
        {"item_id": "r3", "image_a": 1, "image_b": 0, "answer": "A"},
        {"item_id": "r5", "image_a": 0, "image_b": 1, "answer": "B"},  # one order only: right
    ]  # r4 never judged: skipped
    path = tmp_path / "verdicts.jsonl"
    path.write_text("\n".join(json.dumps(v) for v in verdicts), encoding="utf-8")
    loaded = load_verdicts(path)
    assert loaded[0] == Verdict("r0", 0, 1, "A")
    result = agreement(items, verdicts=loaded, protocol="pairwise_excl_ties", n_bootstrap=0)
    pc = result.position_consistency
    assert (pc["pairs"], pc["consistent"]) == (4, 3) and pc["rate"] == pytest.approx(0.75)
    assert pc["wilson_ci"] == stats.wilson_interval(3, 4)
    assert result.value == pytest.approx(2 / 4)
    assert result.predicted_ties == 1 and result.skipped_pairs == 1
    assert "position consistency 75.00% of 4 pairs" in format_agreement(result)


# ---------------------------------------------------------------------------------------------------
# Specs, rendering, errors


def test_specs_are_complete():
    for name in TESTSETS:
        spec = spec_of(name)
        assert spec["name"] == name
        assert spec["loader"] in LOADERS
        assert spec["protocol"] in PROTOCOLS and set(spec["protocols"]) <= set(PROTOCOLS)
        assert spec["license"] and spec["format"]
        for f in spec["files"].values():
            assert "verified" in f
            if f["verified"]:
                assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), (name, f)
            else:
                assert f.get("sha256") is None, (name, f)
        for ref in spec.get("references") or []:
            assert ref["source"] and ref["scorer"]
            if "protocol" in ref:
                assert ref["protocol"] in PROTOCOLS
    assert "taken down" in spec_of("pickapic_v1_test")["availability_note"]


def test_spec_size_and_files_blocks_agree_with_themselves():
    """What each spec's ``size`` and ``files`` blocks say, checked against each other (the real files are
    checked by ``pytest -m slow``, tests/test_slow_sources.py)."""
    checked = 0
    for name in TESTSETS:
        spec = spec_of(name)
        size = {k: v for k, v in (spec.get("size") or {}).items() if v is not None}
        if "group_sizes" in size:
            groups = {int(n): count for n, count in size["group_sizes"].items()}
            assert sum(groups.values()) == size["prompts"], name
            assert sum(n * count for n, count in groups.items()) == size["images"], name
            pairs = sum(count * n * (n - 1) // 2 for n, count in groups.items())
            assert size["decisive_pairs"] + size["tied_pairs"] == pairs, name
            checked += 1
        if "captions" in size and "generators" in size:
            assert size["captions"] * size["generators"] == size["images"], name
            checked += 1
        for key, value in size.items():
            if isinstance(value, dict):
                assert all(isinstance(v, int) and v > 0 for v in value.values()), (name, key)
            elif not isinstance(value, str):
                assert isinstance(value, int) and value > 0, (name, key)
        for kind, f in spec["files"].items():
            if f.get("git_blob_sha1") is not None:
                assert re.fullmatch(r"[0-9a-f]{40}", f["git_blob_sha1"]), (name, kind)
            if f["verified"] and kind.startswith("annotations"):
                assert f.get("url"), (name, kind)  # a pinned hash names the file it is the hash of
            url = f.get("url") or ""
            if url.startswith("https://raw.githubusercontent.com/"):
                assert f"/{spec['revision']}/" in url, (name, kind)  # the spec's revision, not a branch
                assert url.endswith("/" + f["repo_path"]) and url.endswith("/" + f["filename"]), (name, kind)
                checked += 1
    assert checked >= 5  # ImageReward's groups, TIFA160's captions x generators, three raw GitHub URLs


def test_size_problems_compare_a_copy_with_its_spec(imagereward_dir):
    from visionprefer.evaluate.testsets import size_problems

    items = load_testset("imagereward_test", imagereward_dir / "data")
    # the fixture by hand: 4 + 2 + 3 + 3 + 2 images; pairs 6 + 1 + 3 + 3 + 1, of which 2 human ties
    size = {"prompts": 5, "images": 14, "group_sizes": {"2": 2, "3": 2, "4": 1}, "decisive_pairs": 12}
    size |= {"tied_pairs": 2, "pairs_published": "text is not a claim", "hub_pairs": None}
    assert size_problems({"size": size}, items) == []
    assert size_problems({"size": {**size, "images": 15, "group_sizes": {"4": 5}}}, items) == [
        "size.images: the spec states 15, the copy has 14",
        "size.group_sizes: the spec states {4: 5}, the copy has {2: 2, 3: 2, 4: 1}",
    ]


def test_testset_file_checks_the_pinned_hash(tmp_path, monkeypatch):
    import hashlib

    from visionprefer.evaluate import testsets

    monkeypatch.setenv("VISIONPREFER_CACHE", str(tmp_path))
    with pytest.raises(SourceError, match="sha256"):
        testsets.testset_file("imagereward_test", downloader=lambda url, dest: dest.write_text("[]"))
    assert not (tmp_path / "testsets" / "imagereward_test" / "test.json").exists()
    data = b'[{"id": "x"}]'
    spec = spec_of("imagereward_test")
    spec["files"]["annotations"]["sha256"] = hashlib.sha256(data).hexdigest()
    urls = []

    def fake(url, dest):
        urls.append(url)
        dest.write_bytes(data)

    with monkeypatch.context() as m:
        m.setattr(testsets, "testset_spec", lambda name: spec)
        path = testsets.testset_file("imagereward_test", downloader=fake)
        assert path.read_bytes() == data and urls == [spec["files"]["annotations"]["url"]]
        assert testsets.testset_file("imagereward_test", downloader=fake) == path and len(urls) == 1  # cached
    with pytest.raises(ConfigError, match="no download URL"):
        testsets.testset_file("hpdv2_test")
    with pytest.raises(ConfigError, match="no file 'labels'"):
        testsets.testset_file("imagereward_test", "labels")


def test_format_agreement_prints_reference_figures(imagereward_dir):
    items = load_testset("imagereward_test", imagereward_dir / "data")
    result = agreement(items, load_scores(imagereward_dir / "test_model.json"), "imagereward_micro",
                       testset="imagereward_test", n_bootstrap=50)  # fmt: skip
    text = format_agreement(result)
    assert "protocol imagereward_micro" in text and "accuracy 70.00%" in text
    assert "HPS v2.1: accuracy 66.8" in text and "Single Human: accuracy 65.3" in text
    assert "[protocol hpsv2_macro: not comparable as is]" in text
    assert "1 predicted ties" in text and "2 pairs with a missing image or score" in text
    json.dumps(result.to_dict())  # serialisable


def test_errors(imagereward_dir, tmp_path):
    items = load_testset("imagereward_test", imagereward_dir / "data")
    with pytest.raises(ConfigError, match="protocol"):
        agreement(items, {}, "nope")
    with pytest.raises(ConfigError, match="either scores or verdicts"):
        agreement(items, None, "imagereward_micro")
    with pytest.raises(ConfigError, match="Likert"):
        agreement(items, {}, "tifa_correlation")
    with pytest.raises(ConfigError, match="unknown"):
        load_testset("pickapic_v2", tmp_path)
    with pytest.raises(SourceError):
        load_testset("imagereward_test", tmp_path / "missing")
    bad = _write(tmp_path / "bad.json", [{"item_id": "x", "score": 1}])
    with pytest.raises(SourceError, match="needs"):
        load_scores(bad)
    nothing = agreement(items, {}, "imagereward_micro", n_bootstrap=10)
    assert nothing.value is None and nothing.bootstrap_ci is None and nothing.missing_images == 14


def test_run_agreement_writes_summary(imagereward_dir, tmp_path):
    from visionprefer.evaluate.agreement import run_agreement

    out = tmp_path / "out"
    result = run_agreement(
        "imagereward_test",
        imagereward_dir / "data",
        scores=imagereward_dir / "test_model.json",
        out=out,
        n_bootstrap=20,
    )
    assert result.protocol == "imagereward_micro" and result.value == pytest.approx(
        0.7
    )  # the spec's protocol
    summary = json.loads((out / "agreement_summary.json").read_text())
    assert summary["spec_revision"] == spec_of("imagereward_test")["revision"]
    assert re.fullmatch(r"[0-9a-f]{64}", summary["input_sha256"]["scores"])
    assert summary["result"]["n_pairs"] == 10


def test_pickapic_from_a_datasets_dataset():
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "caption": ["a", "b"],
            "jpg_0": [b"0", b"1"],
            "jpg_1": [b"2", b"3"],
            "label_0": [1.0, 0.5],
            "label_1": [0.0, 0.5],
        }
    )
    items = load_pickapic(ds)
    assert [i.ranking for i in items] == [(1.0, 2.0), (1.0, 1.0)] and items[1].item_id == "1"
    with pytest.raises(SourceError, match="label_1"):
        load_pickapic([{"caption": "a", "label_0": 1.0, "label_1": 1.0}])


def test_eval_agreement_from_the_cli(imagereward_dir, tmp_path, capsys):
    """`visionprefer eval agreement` is a registry entry: its --help lists the test sets, and a run prints
    the accuracy beside the published figures and writes the summary."""
    from visionprefer.cli import main
    from visionprefer.evaluate.testsets import TESTSETS

    with pytest.raises(SystemExit):
        main(["eval", "agreement", "--help"])
    helptext = capsys.readouterr().out
    assert all(name in helptext for name in TESTSETS)
    out = tmp_path / "cli-out"
    args = ["--testset", "imagereward_test", "--data", str(imagereward_dir / "data")]
    assert (
        main(
            [
                "eval",
                "agreement",
                *args,
                "--scores",
                str(imagereward_dir / "test_model.json"),
                "--bootstrap",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "imagereward_micro" in printed and "70.0" in printed
    summary = json.loads((out / "agreement_summary.json").read_text())
    assert summary["result"]["correct"] == 7 and summary["result"]["n_pairs"] == 10
    # bad input: one line, non-zero
    assert (
        main(["eval", "agreement", *args, "--scores", str(tmp_path / "missing.json"), "--out", str(out)]) != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("visionprefer: error:")


# ---------------------------------------------------------------------------------------------------
# Leaderboard entries: eval agreement --submission, validation, tables


def _wilson_by_hand(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _submit(testset, data, scores, out, *extra):
    from visionprefer.cli import main

    args = ["eval", "agreement", "--testset", testset, "--data", str(data), "--scores", str(scores)]
    args += ["--out", str(out), "--submission", str(out / "submission.json"), *extra]
    assert main(args) == 0
    return out / "submission.json"


def test_eval_agreement_submission_validates_and_renders(imagereward_dir, tmp_path, capsys):
    import hashlib

    from visionprefer.cli import main
    from visionprefer.leaderboard import validate_submission

    board = tmp_path / "board"
    scores = imagereward_dir / "test_model.json"
    first = _submit(
        "imagereward_test", imagereward_dir / "data", scores, board / "a", "--candidate", "me/rm-a"
    )
    # a second candidate that orders every scored prompt as the humans do (prompt 5 stays unscored)
    perfect = _write(
        tmp_path / "perfect.json",
        {
            "000001-0001": [4, 3, 3.5, 1],
            "000001-0002": [1, 2],
            "000001-0003": [3, 2, 1],
            "000001-0004": [3, 2, 1],
        },
    )
    second = _submit(
        "imagereward_test", imagereward_dir / "data", perfect, board / "b", "--candidate", "me/rm-b"
    )
    capsys.readouterr()

    data = json.loads(first.read_text())
    assert "model" not in data  # an agreement entry describes a scorer, not images a model made
    entry = data["benchmarks"]["agreement/imagereward_test"]
    assert entry["evaluators"] == {"scorer": "me/rm-a"} and entry["metric_version"] == "v1"
    s = entry["summary"]
    # the fixture's arithmetic (see imagereward_dir): 7 right of 10 decisive pairs, 1 of them a predicted tie
    assert (s["testset"], s["protocol"], s["n_pairs"], s["correct"], entry["n"]) == (
        "imagereward_test",
        "imagereward_micro",
        10,
        7,
        10,
    )
    assert s["accuracy"] == pytest.approx(0.7) and s["tie_rate"] == pytest.approx(0.1)
    assert (s["human_ties"], s["predicted_ties"], s["skipped_pairs"], s["missing_images"]) == (2, 1, 2, 1)
    assert (s["wilson_ci"]["low"], s["wilson_ci"]["high"]) == pytest.approx(_wilson_by_hand(7, 10))
    assert s["bootstrap_ci"]["n_resamples"] == 1000 and s["bootstrap_ci"]["method"] == "bootstrap-percentile"
    assert s["input_sha256"] == {"scores": hashlib.sha256(scores.read_bytes()).hexdigest()}
    assert s["candidate"] == {"source": "scores"}
    assert s["spec_revision"] == spec_of("imagereward_test")["revision"]
    items = [json.loads(line) for line in (board / "a" / "agreement_items.jsonl").read_text().splitlines()]
    assert [(r["item_id"], r["decisive_pairs"], r["correct"]) for r in items] == [
        ("000001-0001", 5, 4),
        ("000001-0002", 1, 0),
        ("000001-0003", 3, 2),
        ("000001-0004", 1, 1),
        ("000001-0005", 0, 0),
    ]
    validate_submission(first)
    # decisive pairs: 5 in prompt 1 (one human tie), 1 in prompt 2, 3 each in prompts 3 and 4: 12 of 12
    best = json.loads(second.read_text())["benchmarks"]["agreement/imagereward_test"]["summary"]
    assert (best["correct"], best["n_pairs"], best["accuracy"]) == (12, 12, 1.0)

    assert main(["leaderboard", "validate", str(first), str(second)]) == 0
    table = tmp_path / "table"
    args = [
        "leaderboard",
        "render",
        str(board),
        "--out",
        str(table),
        "--benchmark",
        "agreement/imagereward_test",
    ]
    assert main(args) == 0
    markdown = (table / "leaderboard.md").read_text()
    assert "# Leaderboard: Agreement with humans on imagereward_test, ranked by accuracy" in markdown
    assert "protocol imagereward_micro" in markdown
    ranked = [line for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert "me/rm-b" in ranked[0] and "1.000" in ranked[0]
    assert "me/rm-a" in ranked[1] and "0.700" in ranked[1] and "per-image scores file" in ranked[1]
    html = (table / "leaderboard.html").read_text()
    assert "<h2>Agreement with humans on imagereward_test: accuracy (protocol imagereward_micro)</h2>" in html


def test_tifa160_submission_carries_the_correlations(tifa_file, tmp_path, capsys):
    from scipy.stats import kendalltau, pearsonr, spearmanr

    from visionprefer.cli import main

    predicted = [0.9, 0.5, 0.6, 0.1, 0.5, 0.2, 0.3, 0.3, 0.8]
    data = json.loads(tifa_file.read_text())
    keys = list(data)  # t1, t2, t3 x three generators, in file order
    scores = _write(tmp_path / "scores.json", dict(zip(keys, predicted, strict=True)))
    out = tmp_path / "board" / "tifa"
    sub = _submit("tifa160", tifa_file, scores, out, "--candidate", "me/metric")
    entry = json.loads(sub.read_text())["benchmarks"]["agreement/tifa160"]
    s = entry["summary"]
    human = [data[k]["human_avg"] for k in keys]
    assert s["spearman"] == pytest.approx(spearmanr(human, predicted).statistic)
    assert s["kendall_tau_b"] == pytest.approx(kendalltau(human, predicted).statistic)
    assert s["pearson"] == pytest.approx(pearsonr(human, predicted).statistic)
    assert s["images"] == 9 == entry["n"] and "accuracy" not in s and "n_pairs" not in s
    assert main(["leaderboard", "render", str(tmp_path / "board"), "--out", str(tmp_path / "t"),
                 "--benchmark", "agreement/tifa160", "--metric", "kendall_tau_b"]) == 0  # fmt: skip
    markdown = (tmp_path / "t" / "leaderboard.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| 1 "))
    assert "me/metric" in row and f"{kendalltau(human, predicted).statistic:.3f}" in row


def test_eval_agreement_submission_needs_a_candidate_and_enough_resamples(imagereward_dir, tmp_path, capsys):
    from visionprefer.cli import main

    base = ["eval", "agreement", "--testset", "imagereward_test", "--data", str(imagereward_dir / "data")]
    base += ["--scores", str(imagereward_dir / "test_model.json"), "--out", str(tmp_path / "o")]
    for extra, phrase in (
        ([], "--submission: name the scorer or judge that produced --scores with --candidate MODEL_ID"),
        (["--candidate", "x", "--bootstrap", "50"], "needs --bootstrap 1000 or more (got 50)"),
    ):
        assert main([*base, "--submission", str(tmp_path / "s.json"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and phrase in err[0], err
        assert not (tmp_path / "o").exists()  # refused before any work


def _rename_testset(d):
    d["benchmarks"]["agreement/imagereward_v9"] = d["benchmarks"].pop("agreement/imagereward_test")


def _add_hps_entry(d):
    from pathlib import Path

    example = json.loads(
        (Path(__file__).parent / "data" / "leaderboard" / "sdxl" / "submission.json").read_text()
    )
    d["benchmarks"]["hpsv2"] = example["benchmarks"]["hpsv2"]


def _as_judge(d):
    d["benchmarks"]["agreement/imagereward_test"]["evaluators"] = {"judge": "gpt-4o"}


def _set_summary(key, value):
    def mutate(d):
        d["benchmarks"]["agreement/imagereward_test"]["summary"][key] = value

    return mutate


AG = 'benchmarks["agreement/imagereward_test"]'
BAD_AGREEMENT = [
    (
        "accuracy-outside-ci",
        _set_summary("bootstrap_ci", {"low": 0.1, "high": 0.2, "level": 0.95, "method": "bootstrap-percentile",
                                      "n_resamples": 1000}),  # fmt: skip
        f"{AG}.summary.bootstrap_ci",
        "[0.1, 0.2] does not contain its estimate accuracy = 0.7",
    ),
    (
        "protocol-of-another-set",
        _set_summary("protocol", "hpsv2_ranking"),
        f"{AG}.summary.protocol",
        "'hpsv2_ranking' is not a protocol of imagereward_test (its spec allows imagereward_micro, hpsv2_macro)",
    ),
    (
        "unknown-protocol",
        _set_summary("protocol", "majority_vote"),
        f"{AG}.summary.protocol",
        "'majority_vote' is not a protocol of imagereward_test",
    ),
    (
        "unknown-testset",
        _rename_testset,
        'benchmarks["agreement/imagereward_v9"]',
        "unknown key; valid keys here: tifa, hpsv2, score, winrate, bradley_terry, agreement/imagereward_test",
    ),
    (
        "testset-other-than-key",
        _set_summary("testset", "hpdv2_test"),
        f"{AG}.summary.testset",
        "'hpdv2_test' is not 'imagereward_test', the test set of agreement/imagereward_test",
    ),
    ("accuracy-above-1", _set_summary("accuracy", 1.2), f"{AG}.summary.accuracy", "must be <= 1, got 1.2"),
    ("no-pairs", _set_summary("n_pairs", 0), f"{AG}.summary.n_pairs", "must be >= 1, got 0"),
    ("accuracy-vs-counts", _set_summary("accuracy", 0.75), f"{AG}.summary.accuracy", "0.75 is not correct / n_pairs = 0.7000"),
    (
        "wilson",
        _set_summary("wilson_ci", {"low": 0.3, "high": 0.9, "level": 0.95, "method": "wilson"}),
        f"{AG}.summary.wilson_ci.low",
        "0.3 is not the 0.95 Wilson bound for 7 correct in 10 pairs",
    ),
    ("tie-rate", _set_summary("tie_rate", 0.5), f"{AG}.summary.tie_rate", "0.5 is not predicted_ties / decisive pairs = 0.1000"),
    ("correlation-on-pairs", _set_summary("spearman", 0.5), f"{AG}.summary.spearman", "not a figure of protocol imagereward_micro"),
    ("judge-with-scores", _as_judge, f"{AG}.summary.candidate.source", "come from a judge, scores from a scorer"),
    ("model-for-other-benchmarks", _add_hps_entry, "model", "missing (required)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "field", "phrase"), [c[1:] for c in BAD_AGREEMENT], ids=[c[0] for c in BAD_AGREEMENT]
)
def test_bad_agreement_entry_is_rejected_naming_the_field(
    imagereward_dir, tmp_path, capsys, mutate, field, phrase
):
    from visionprefer.leaderboard import SubmissionError, validate_submission

    out = tmp_path / "sub"
    path = _submit("imagereward_test", imagereward_dir / "data", imagereward_dir / "test_model.json", out,
                   "--candidate", "me/rm")  # fmt: skip
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SubmissionError) as info:
        validate_submission(path, base_dir=out)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.field == field, message
    assert message.startswith(f"{path}: {field}: ") and phrase in message, message


def test_judge_verdicts_submission_has_position_consistency(pickapic_parquet, tmp_path, capsys):
    from visionprefer.leaderboard import validate_submission

    rows = [("r0", "A", "B"), ("r1", "A", "A"), ("r2", "tie", "tie"), ("r3", "B", "A")]  # both orders
    verdicts = [{"item_id": i, "image_a": 0, "image_b": 1, "answer": first} for i, first, _ in rows]
    verdicts += [{"item_id": i, "image_a": 1, "image_b": 0, "answer": second} for i, _, second in rows]
    verdicts.append({"item_id": "r5", "image_a": 0, "image_b": 1, "answer": "B"})  # one order only
    path = tmp_path / "verdicts.jsonl"
    path.write_text("\n".join(json.dumps(v) for v in verdicts), encoding="utf-8")
    from visionprefer.cli import main

    out = tmp_path / "judge"
    args = ["eval", "agreement", "--testset", "pickapic_v1_test", "--data", str(pickapic_parquet / "data")]
    args += ["--verdicts", str(path), "--candidate", "gpt-4o-2024-08-06", "--out", str(out)]
    assert main([*args, "--submission", str(out / "submission.json")]) == 0
    entry = json.loads((out / "submission.json").read_text())["benchmarks"]["agreement/pickapic_v1_test"]
    s = entry["summary"]
    assert entry["evaluators"] == {"judge": "gpt-4o-2024-08-06"} and s["candidate"] == {"source": "verdicts"}
    assert set(s["input_sha256"]) == {"verdicts"}
    # test_unique only (the folder also holds validation_unique, the spec names the split): decisive rows
    # r0 (right), r1 (orders disagree: a tie, wrong), r3 (wrong), r5 (right); r4 unjudged
    assert (s["correct"], s["n_pairs"], s["predicted_ties"], s["skipped_pairs"]) == (2, 4, 1, 1)
    pc = s["position_consistency"]
    assert (pc["pairs"], pc["consistent"], pc["rate"]) == (4, 3, 0.75)  # r0, r2, r3 agree with themselves
    assert (pc["wilson_ci"]["low"], pc["wilson_ci"]["high"]) == pytest.approx(_wilson_by_hand(3, 4))
    validate_submission(out / "submission.json")


def test_an_unscored_human_tie_is_a_human_tie_where_the_protocol_leaves_ties_out(pickapic_parquet):
    """r2 (labels 0.5/0.5) without scores: pairwise_excl_ties leaves it out as a human tie whether scored or
    not; pickscore_tie_credit counts human ties, so there it is a skipped pair."""
    items = load_pickapic(pickapic_parquet, split="test_unique")
    scores = {k: v for k, v in _pick_scores().items() if k[0] != "r2"}
    excl = agreement(items, scores, "pairwise_excl_ties", n_bootstrap=0)
    assert (excl.human_ties, excl.skipped_pairs, excl.missing_images) == (1, 0, 2)
    assert excl.value == pytest.approx(3 / 5)
    credit = agreement(items, scores, "pickscore_tie_credit", n_bootstrap=0)
    assert (credit.human_ties, credit.skipped_pairs) == (0, 1)
    assert credit.value == pytest.approx((1 + 1 + 0 + 0.5 + 1) / 5)  # r0, r1, r3, r4 (predicted tie), r5
