"""CQ score: the offline prompt parser, the formula on crafted detections, CQScorer with a tiny detector."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from visionprefer.errors import ModelLoadError
from visionprefer.scorers import ImageTextScorer
from visionprefer.scorers.cq import (
    CQResult,
    CQScorer,
    Detection,
    ExpectedObject,
    LabelVocabulary,
    build_tiny_detector,
    coco_id2label,
    cq_from_detections,
    cq_score,
    parse_prompt,
)


def parsed(prompt, labels=None):
    return [(o.label, o.count, o.at_least) for o in parse_prompt(prompt, labels)]


# ------------------------------------------------------------------------------------------------ parser
@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        # the brief's cases
        ("two dogs and a cat", [("dog", 2, False), ("cat", 1, False)]),
        ("a dining table", [("dining table", 1, False)]),
        ("three skiers", [("person", 3, False)]),
        ("a pair of scissors", [("scissors", 1, False)]),  # one COCO object, not two
        # plurals, regular and irregular
        ("five oranges", [("orange", 5, False)]),
        ("two buses and two knives", [("bus", 2, False), ("knife", 2, False)]),
        ("three mice", [("mouse", 3, False)]),
        ("four people", [("person", 4, False)]),
        ("two children", [("person", 2, False)]),
        ("cattle grazing", [("cow", 2, True)]),
        # synonyms
        ("a puppy", [("dog", 1, False)]),
        ("two kittens", [("cat", 2, False)]),
        ("a cat sitting on a red sofa", [("cat", 1, False), ("couch", 1, False)]),
        ("a couple of motorbikes near an aeroplane", [("motorcycle", 2, False), ("airplane", 1, False)]),
        ("the television and the fridge", [("tv", 1, False), ("refrigerator", 1, False)]),
        ("a table", [("dining table", 1, False)]),
        ("a smartphone", [("cell phone", 1, False)]),
        ("a man and a woman walking a puppy", [("person", 2, False), ("dog", 1, False)]),
        ("a boy, a girl and a child", [("person", 3, False)]),
        # multi-word labels, longest first, also as one word or hyphenated
        ("a teddy bear", [("teddy bear", 1, False)]),
        ("a traffic light and two stop signs", [("traffic light", 1, False), ("stop sign", 2, False)]),
        ("two hot-dogs and 3 cell phones", [("hot dog", 2, False), ("cell phone", 3, False)]),
        ("a hotdog", [("hot dog", 1, False)]),
        ("two wine glasses", [("wine glass", 2, False)]),
        ("two glasses of wine", [("wine glass", 2, False)]),
        ("a baseball player with a baseball bat", [("person", 1, False), ("baseball bat", 1, False)]),
        # number words, phrases and pairs
        ("twelve donuts", [("donut", 12, False)]),
        ("a dozen doughnuts", [("donut", 12, False)]),
        ("one bird", [("bird", 1, False)]),
        ("a pair of dogs", [("dog", 2, False)]),
        ("two pairs of skis", [("skis", 2, False)]),
        ("a skier with skis", [("person", 1, False), ("skis", 1, False)]),
        ("two brown and white dogs", [("dog", 2, False)]),
        ("two very fluffy little dogs", [("dog", 2, False)]),
        ("three trees and a dog", [("dog", 1, False)]),  # the number belongs to the trees
        # unspecified counts: singular 1, bare plurals and collectives at least 2
        ("dogs playing in the snow", [("dog", 2, True)]),
        ("a group of people", [("person", 2, True)]),
        ("a herd of sheep", [("sheep", 2, True)]),
        ("a crowd", [("person", 2, True)]),
        ("a plate of food with broccoli", [("broccoli", 1, True)]),
        ("an elephant with its calf", [("elephant", 1, False)]),
        ("a kitchen with a stove", [("oven", 1, False)]),
        ("one of the dogs", [("dog", 2, True)]),
        # modifiers, compounds, negation, undetectable nouns
        ("an orange cat", [("cat", 1, False)]),
        ("an orange and a banana", [("orange", 1, False), ("banana", 1, False)]),
        ("a dog bed", [("bed", 1, False)]),
        ("a bus driver", [("person", 1, False)]),
        ("a cat with no dogs", [("cat", 1, False)]),
        ("an empty room without a person", []),
        ("a room with no windows, a dog and no people", [("dog", 1, False)]),
        ("a lighthouse on a cliff", []),
        ("a lighthouse and a dog", [("dog", 1, False)]),
        ("", []),
    ],
)
def test_parse_prompt_coco(prompt, expected):
    assert parsed(prompt) == expected


def test_mentions_are_merged_and_kept():
    (person,) = parse_prompt("a man and two women")
    assert person == ExpectedObject("person", 3, False, ("man", "women"))
    (dog,) = parse_prompt("two dogs and dogs")
    assert (dog.count, dog.at_least) == (4, True)  # "at least" if any mention is


def test_vocabulary_follows_the_detector_labels():
    # PASCAL-VOC-style names: the synonym groups map to whichever member the detector knows.
    voc = [
        "background",
        "aeroplane",
        "sofa",
        "diningtable",
        "tvmonitor",
        "person",
        "pottedplant",
        "motorbike",
    ]
    assert parsed("a couch, an airplane and a dining table", voc) == [
        ("sofa", 1, False),
        ("aeroplane", 1, False),
        ("diningtable", 1, False),
    ]
    assert parsed("a tv, two potted plants and three motorcycles", voc) == [
        ("tvmonitor", 1, False),
        ("pottedplant", 2, False),
        ("motorbike", 3, False),
    ]
    assert parsed("a dog", voc) == []  # not a label of this detector
    vocab = LabelVocabulary(coco_id2label().values())
    assert "N/A" not in vocab.labels and len(vocab.labels) == 80
    with pytest.raises(ValueError, match="no usable label"):
        LabelVocabulary(["N/A", "LABEL_0", "LABEL_1"])


# ------------------------------------------------------------------------------------------------ formula
def test_cq_two_dogs_and_a_cat():
    expected = parse_prompt("two dogs and a cat")
    detections = [("dog", 0.95), ("dog", 0.91), ("dog", 0.93), ("cat", 0.97), ("person", 0.99)]
    result = cq_from_detections(expected, detections)
    # dog: mean conf 2.79/3 = 0.93, quantity 2/3; cat: 0.97, 1; the person is not asked for.
    assert result.category_confidence == pytest.approx(0.95)  # (0.93 + 0.97) / 2
    assert result.quantity_confidence == pytest.approx(5 / 6)  # (2/3 + 1) / 2
    assert result.cq == pytest.approx(95 / 107)  # 2 * 0.95 * 5/6 / (0.95 + 5/6) = 0.88785...
    assert [(r.label, r.expected, r.detected) for r in result.labels] == [("dog", 2, 3), ("cat", 1, 1)]


def test_cq_dining_table_skiers_scissors():
    # 2 * 0.92 * 1 / 1.92
    assert cq_score("a dining table", [("dining table", 0.92)]) == pytest.approx(23 / 24)
    # person: conf (0.99 + 0.96) / 2 = 0.975, quantity 2/3 -> 2 * 0.975 * 2/3 / (0.975 + 2/3) = 156/197.
    # Exact string matching ("skier" != "person") would give 0 here.
    skiers = cq_score("three skiers", [Detection("person", 0.99), Detection("person", 0.96), ("skis", 0.93)])
    assert skiers == pytest.approx(156 / 197)
    # one pair of scissors is one box: 2 * 0.95 / 1.95
    assert cq_score("a pair of scissors", [("scissors", 0.95)]) == pytest.approx(38 / 39)


def test_cq_counts_missing_labels_and_synonyms():
    # cat: 0.9, 1; dog: 0, 0 -> A_cc 0.45, A_qc 0.5 -> 2 * 0.45 * 0.5 / 0.95 = 9/19
    assert cq_score("a cat and a dog", [("cat", 0.9)]) == pytest.approx(9 / 19)
    # a man and a woman are two persons; one detected: 2 * 0.98 * 0.5 / 1.48 = 49/74
    assert cq_score("a man and a woman", [("person", 0.98)]) == pytest.approx(49 / 74)
    # bare plural = at least 2: three dogs are fine, one dog is half
    assert cq_score("dogs", [("dog", 1.0)] * 3) == pytest.approx(1.0)
    assert cq_score("dogs", [("dog", 1.0)]) == pytest.approx(2 * 0.5 / 1.5)
    # an exact count is penalised both ways: 2 expected, 4 seen -> quantity 0.5
    assert cq_score("two dogs", [("dog", 1.0)] * 4) == pytest.approx(2 / 3)


def test_cq_edge_cases():
    assert cq_score("two dogs", []) == 0.0
    assert cq_score("two dogs", [("cat", 0.99)]) == 0.0
    empty = cq_from_detections(parse_prompt("a lighthouse"), [("person", 0.99)])
    assert isinstance(empty, CQResult) and math.isnan(empty.cq) and empty.labels == ()
    with pytest.raises(ValueError, match="at least 1"):
        cq_from_detections([ExpectedObject("dog", 0)], [])


# ------------------------------------------------------------------------------------------------ scorer
@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    return build_tiny_detector(tmp_path_factory.mktemp("tiny-yolos"))


@pytest.fixture(scope="module")
def dog_detector(tiny_detector, tmp_path_factory):
    """The tiny detector with its class head fixed so that every detection token says "dog" (p ~ 1 - 1e-7)."""
    import torch
    from transformers import YolosForObjectDetection

    model = YolosForObjectDetection.from_pretrained(tiny_detector)
    head = model.class_labels_classifier.layers[-1]
    dog = model.config.label2id["dog"]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[dog] = 20.0
    folder = tmp_path_factory.mktemp("dog-yolos")
    model.save_pretrained(folder)
    shutil.copy(tiny_detector / "preprocessor_config.json", folder)
    return folder


def images(n=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(48, 40), (40, 56)]  # two sizes: batched per size
    return [Image.fromarray(rng.integers(0, 255, (*sizes[i % 2][::-1], 3), dtype=np.uint8)) for i in range(n)]


def test_cq_scorer_random_weights(tiny_detector):
    scorer = CQScorer(str(tiny_detector), device="cpu", batch_size=2)
    assert isinstance(scorer, ImageTextScorer) and scorer.higher_is_better is True
    prompts = ["two dogs and a cat", "a dining table", "three skiers", "a lighthouse"]
    scores = scorer.score(prompts, images())
    # random weights: class probabilities ~1/92, nothing passes 0.9 -> 0, and NaN for no detectable object
    assert scores.dtype == np.float64 and scores.shape == (4,)
    assert scores[:3].tolist() == [0.0, 0.0, 0.0] and math.isnan(scores[3])
    assert scorer.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="3 prompts for 4 images"):
        scorer.score(prompts[:3], images())


def test_cq_scorer_low_threshold_counts(tiny_detector):
    scorer = CQScorer(str(tiny_detector), threshold=0.0, device="cpu", batch_size=3)
    ims = images(5)
    detections = scorer.detect(ims)
    assert [len(d) for d in detections] == [10] * 5  # one per detection token
    # batching by size gives what one image at a time gives
    single = [scorer.detect([im])[0] for im in ims]
    for got, alone in zip(detections, single, strict=True):
        assert [d.label for d in got] == [d.label for d in alone]
        assert [d.score for d in got] == pytest.approx([d.score for d in alone], abs=1e-6)
    # the formula on the detector's own output: "a <label>" expects 1 of the first image's top label
    prompts = [f"a {d[0].label}" for d in detections]
    assert all(d[0].label in scorer.vocabulary for d in detections)  # seeded: real COCO names, not "N/A"
    for result, dets in zip(scorer.evaluate(prompts, ims), detections, strict=True):
        scores = [d.score for d in dets if d.label == dets[0].label]
        conf, a_qc = sum(scores) / len(scores), 1 / len(scores)
        assert result.labels[0].detected == len(scores)
        assert result.cq == pytest.approx(2 * conf * a_qc / (conf + a_qc))


def test_cq_scorer_end_to_end_arithmetic(dog_detector):
    scorer = CQScorer(str(dog_detector), device="cpu")  # default threshold 0.9
    prompts = ["two dogs", "ten puppies", "a cat", "a lighthouse"]
    results = scorer.evaluate(prompts, images())
    p = results[0].labels[0].category_confidence
    assert p == pytest.approx(1.0, abs=1e-6) and results[0].labels[0].detected == 10
    assert results[0].quantity_confidence == pytest.approx(0.2)  # 2 expected, 10 seen
    assert results[0].cq == pytest.approx(2 * p * 0.2 / (p + 0.2))  # ~ 1/3
    assert results[1].cq == pytest.approx(1.0, abs=1e-6)
    assert results[2].cq == 0.0 and math.isnan(results[3].cq)
    np.testing.assert_allclose(scorer.score(prompts, images()), [r.cq for r in results])


def test_cq_scorer_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load object-detection model") as info:
        CQScorer(str(tmp_path / "missing"), device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="threshold"):
        CQScorer(str(tmp_path), threshold=1.5)
