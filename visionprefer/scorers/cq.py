"""CQ score ("Bridging the Gap", arXiv 2412.00122): object detection vs the nouns and numbers of a prompt.

Definition (per image). A detector (``hustvl/yolos-tiny`` in the original, boxes kept when their confidence
is above 0.9) gives, per label ``l``, ``n_l`` detections with confidences ``c_l,1 .. c_l,n``. The prompt gives
the expected objects: a label ``l`` and a count ``t_l``. Then::

    A_cc = mean over expected labels of  sum(c_l) / n_l          (0 for a label with no detection)
    A_qc = mean over expected labels of  min(n_l, t_l) / max(n_l, t_l)   (0 when n_l = 0)
    CQ   = 2 * A_cc * A_qc / (A_cc + A_qc)                        (0 if either is 0)

:func:`cq_from_detections` is that formula as a pure function of (expected objects, detections), so it can be
checked on crafted detections; :class:`CQScorer` runs a transformers object-detection model and applies it.

The original (``CQScore/F1Score.py`` in github.com/kingniu0329/Bridging-Visions, the paper's code): spaCy
``en_core_web_sm`` keeps the NUM and NOUN tokens (nouns singularised with ``inflect``, numbers read with
``word2number``); each noun takes the last number before it, else 1; the result is a dict keyed by the noun,
so a repeated noun keeps its last count; the mean runs over all those nouns, detectable or not; a noun counts
as found only if it equals a detector label string; boxes need a confidence above 0.9 (the
``post_process_object_detection`` threshold); a prompt with no noun scores 0. Its own example, "three skiers
look over edge of balcony to the slopes below", scores 0 on every image: "skier" is not "person", and edge,
balcony and slope are nouns no COCO detector finds.

Prompt parsing here is offline (:func:`parse_prompt`; spaCy models and NLTK data are not installable): the
prompt is matched against the detector's own label vocabulary (``model.config.id2label``; the 80 COCO names
by default), which does better in these ways:

- **Multi-word labels**: "dining table", "traffic light", "hot dog", "teddy bear", "cell phone", "wine glass",
  "baseball bat" ... are matched as phrases, longest first ("a teddy bear" is a teddy bear, not a bear), also
  written as one word or hyphenated ("hotdog", "hot-dog", "cellphone").
- **Plurals**, regular and irregular ("dogs", "buses", "knives", "mice" -> mouse, "people" -> person,
  "children"/"men"/"women" -> person, "geese" -> bird), reusing the rules of :mod:`.questions`; every word of
  a phrase may be inflected ("glasses of wine" -> wine glass).
- **Synonyms and hyponyms** map to the label the detector was trained on (:data:`SYNONYMS`): skier, man,
  woman, child, boy, girl, chef, ... -> person; puppy and common breeds -> dog; kitten -> cat; sofa -> couch;
  motorbike -> motorcycle; plane/aeroplane -> airplane; television -> tv; phone/smartphone -> cell phone;
  bike -> bicycle; duck/owl/parrot/... -> bird; ship/yacht/canoe -> boat; mug -> cup; fridge ->
  refrigerator; doughnut -> donut; burger -> sandwich; "table" -> "dining table" (COCO's only table class,
  used for tables of every kind; "desk" is left unmapped). The groups are symmetric: a detector whose
  vocabulary says "sofa" or "aeroplane" (PASCAL VOC names) gets "couch" and "airplane" mapped to those.
- **Mentions of one label are merged**: "a man and a woman" expects two persons, "two dogs and a puppy" three
  dogs. The means run over the distinct expected labels (the detector cannot tell a man from a woman).
- **Nouns the detector cannot detect are left out** ("a lighthouse and a dog" is scored on the dog). Exact
  matching scores such nouns 0 on every image, which scales A_cc and A_qc, and so CQ, by a constant per
  prompt: it changes no ranking within a prompt but biases averages across prompts. A prompt with no
  detectable object has no CQ: NaN (the original gives 0), for callers to skip.
- **Modifiers and compounds**: a colour word that is also a label is a colour before a noun ("an orange
  cat" is a cat; "an orange and a banana" has an orange); a singular noun directly followed by another
  detectable noun modifies it ("a dog bed" is a bed, "a baseball player" a person, "a bus driver" a person).
- **Negation**: "no dogs", "zero cats", "without a car" expect nothing; those mentions are dropped (the
  formula cannot score an expected count of 0).

Counts. Number words "a"/"an"/"one"/"another"/"single" = 1, "two" ... "twenty", "both" = 2, "a dozen" = 12,
digits 1-100, "a couple of" = 2. A number applies to the next noun within four words unless a conjunction,
preposition or verb comes first ("two big brown dogs" is 2 dogs; "three trees and a dog" is 1 dog).
"a pair of X" is 2 X, except for labels that name a pair (:data:`PAIRED_LABELS`: scissors, skis), where a
pair is one COCO object: "a pair of scissors" is 1 scissors, "two pairs of skis" is 2 skis. Bare "scissors"/
"skis" (no number) are 1.

Unspecified counts. The original expects 1 of every noun without a number, bare plurals included ("dogs"
expects 1, so an image with two dogs gets a quantity ratio of 1/2). Here a singular noun without a number
expects exactly 1; a bare plural ("dogs", "people") or a collective ("a group of", "a crowd of", "a herd
of", "a flock of", "a few", "lots of", ...; "a crowd"/"a family" alone are persons) expects **at least 2**;
a mass noun without a number ("pasta with broccoli") expects at least 1. "At least t" is scored as an exact
target of ``max(t, n)``: n >= t gives a quantity ratio of 1, fewer gives ``n / t``. Mentions of a label add
up (the original keeps the last); the sum is "at least" if any mention is.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from ..models.coco import build_tiny_detector, coco_id2label  # noqa: F401 (re-exported)
from ..models.text_embed import resolve_model_path
from ._common import as_rgb, batches, check_batch_size, load_error, resolve_device
from .questions import (
    ACTIVITIES,
    ATTRIBUTES,
    COCO_CLASSES,
    COLORS,
    MASS_NOUNS,
    MATERIALS,
    NOUNS,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
    _singular_candidates,
    tokenize,
)

DEFAULT_DETECTOR = "hustvl/yolos-tiny"
DEFAULT_THRESHOLD = 0.9

# ------------------------------------------------------------------------------------------------ vocabulary
# The COCO label (as HF COCO detectors name it) -> other words for it. A group maps to whichever member the
# detector knows (the COCO name first); words that are labels themselves always stay themselves.
_PERSON_WORDS = [
    "person", "man", "woman", "boy", "girl", "child", "kid", "baby", "infant", "toddler", "teenager", "teen",
    "youngster", "lady", "gentleman", "guy", "adult", "human", "pedestrian", "tourist", "passenger",
    "spectator", "driver", "biker", "hiker", "rider", "cyclist", "skier", "surfer", "skateboarder",
    "snowboarder", "runner", "jogger", "swimmer", "player", "athlete", "dancer", "singer", "musician",
    "guitarist", "pianist", "drummer", "chef", "cook", "baker", "waiter", "waitress", "doctor", "nurse",
    "student", "teacher", "soldier", "knight", "king", "queen", "prince", "princess", "farmer", "cowboy",
    "cowgirl", "firefighter", "fireman", "policeman", "policewoman", "police-officer", "scientist", "artist",
    "painter", "worker", "businessman", "businesswoman", "fisherman", "astronaut", "pirate", "wizard",
    "witch", "warrior", "ninja", "samurai", "monk", "clown", "friend", "mother", "father", "mom", "dad",
    "grandmother", "grandfather", "grandma", "grandpa", "son", "daughter", "brother", "sister", "husband",
    "wife", "bride", "groom",
]  # fmt: skip
# Human nouns of the template-question vocabulary, minus the group words handled as collectives below.
_PERSON_WORDS += sorted(
    w for w, t in NOUNS.items() if t == "human" and w not in {"people", "family", "couple", "crowd"}
)

SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": tuple(dict.fromkeys(w.replace("-", " ") for w in _PERSON_WORDS if w != "person")),
    "bicycle": ("bike", "pushbike", "push bike"),
    "car": ("automobile", "sedan", "taxi", "cab", "suv", "jeep"),
    "motorcycle": ("motorbike", "moped", "motor bike"),
    "airplane": ("aeroplane", "plane", "airliner", "aircraft", "jetliner", "jumbo jet"),
    "bus": ("minibus", "omnibus", "school bus", "double decker"),
    "train": ("locomotive",),
    "truck": ("lorry",),
    "boat": ("ship", "sailboat", "yacht", "canoe", "kayak", "ferry", "rowboat", "dinghy", "speedboat"),
    "traffic light": ("stoplight", "traffic signal"),
    "fire hydrant": ("hydrant",),
    "bench": ("park bench",),
    "bird": (
        "duck", "duckling", "goose", "swan", "chicken", "hen", "rooster", "chick", "parrot", "owl", "eagle",
        "hawk", "pigeon", "dove", "sparrow", "seagull", "gull", "crow", "raven", "penguin", "flamingo",
        "robin", "hummingbird", "songbird", "bluebird", "peacock", "pelican", "stork", "heron", "toucan",
    ),
    "cat": ("kitten", "kitty", "tomcat"),
    "dog": (
        "puppy", "pup", "doggy", "doggie", "hound", "poodle", "corgi", "husky", "labrador", "retriever",
        "terrier", "bulldog", "beagle", "dachshund", "chihuahua", "pug", "dalmatian", "greyhound",
        "rottweiler", "sheepdog",
    ),
    "horse": ("pony", "foal", "stallion", "mare"),
    "sheep": ("lamb",),
    "cow": ("bull", "ox", "heifer"),  # not "calf": elephants and giraffes have calves too
    "bear": ("grizzly", "polar bear", "brown bear"),
    "backpack": ("rucksack", "knapsack", "back pack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag"),
    "tie": ("necktie", "bow tie"),
    "suitcase": ("suit case",),
    "frisbee": ("flying disc",),
    "skis": ("ski",),
    "sports ball": ("ball", "football", "soccer ball", "basketball", "volleyball", "baseball", "softball"),
    "baseball glove": ("baseball mitt", "mitt"),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "wine glass": ("wineglass", "glass of wine"),
    "cup": ("mug", "teacup", "coffee cup"),
    "sandwich": ("burger", "hamburger", "cheeseburger"),
    "orange": ("tangerine", "clementine", "mandarin"),
    "hot dog": ("frankfurter",),
    "donut": ("doughnut",),
    "cake": ("cupcake",),
    "chair": ("armchair", "high chair"),
    "couch": ("sofa", "settee"),
    "potted plant": ("houseplant", "pottedplant"),
    "dining table": ("table", "diningtable", "kitchen table"),
    "tv": ("television", "tvmonitor", "tv monitor"),
    "cell phone": ("phone", "cellphone", "smartphone", "mobile phone", "iphone"),
    "remote": ("remote control",),
    "oven": ("stove",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy", "teddybear"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer", "blow drier"),
    "toothbrush": ("tooth brush",),
}  # fmt: skip

# Words for several people: (label, count, at_least). "a couple" is two; a crowd, family or team two or more.
_PERSON_GROUPS = {"crowd": (2, True), "family": (2, True), "team": (2, True), "couple": (2, False)}
# Words whose form is already plural ("cattle" has no singular in use): matched as plurals.
_PLURAL_WORDS = {"cattle": "cow"}

PAIRED_LABELS = frozenset({"scissors", "skis"})
"""Labels that name a pair: "a pair of scissors" is one scissors box in COCO, not two."""

# ------------------------------------------------------------------------------------------------ count words
_COUNT_WORDS = {k: v for k, v in NUMBER_WORDS.items() if k != "dozen"} | {"a": 1, "an": 1, "another": 1}
_NEGATIONS = {"no", "zero", "without"}
# (phrase, count, at_least, pair). Longest phrases are tried first.
_QUANTITY_PHRASES: list[tuple[tuple[str, ...], int, bool, bool]] = [
    (("a", "couple", "of"), 2, False, False),
    (("couple", "of"), 2, False, False),
    (("a", "pair", "of"), 1, False, True),
    (("pair", "of"), 1, False, True),
    (("pairs", "of"), 2, True, True),
    (("a", "dozen"), 12, False, False),
    (("dozens", "of"), 24, True, False),
    (("a", "lot", "of"), 2, True, False),
    (("lots", "of"), 2, True, False),
    (("a", "few"), 2, True, False),
]
for _word in ("group", "crowd", "herd", "flock", "pack", "bunch", "team", "family", "number", "pile", "row"):
    _QUANTITY_PHRASES += [(("a", _word, "of"), 2, True, False), ((_word + "s", "of"), 2, True, False)]
_QUANTITY_PHRASES.sort(key=lambda p: -len(p[0]))

# Words after which a pending number no longer applies: "three trees and a dog" is one dog.
_BREAKS = (
    {"and", "or", "of", "with", "but", "while", "plus", "is", "are", "was", "were", "has", "have", "then"}
    | {r.split()[0] for r in RELATIONS}
    | set(ACTIVITIES)
)
_MODIFIERS = COLORS | set(MATERIALS) | SHAPES | ATTRIBUTES
_NUMBER_REACH = 4  # words between a number and its noun


def _normalize(label: str) -> str:
    return " ".join(tokenize(label.replace("_", " ")))


def _usable(label: str) -> bool:
    """False for id2label placeholders: "N/A" (the unused COCO ids), "LABEL_3", "background"."""
    name = _normalize(label)
    return (
        bool(name)
        and name not in ("n a", "na", "background", "no object")
        and not re.fullmatch(r"label \d+|\d+", name)
    )


@dataclass(frozen=True)
class _Entry:
    label: str  # the detector's label, as in id2label
    count: int = 1  # objects per mention ("a crowd" is 2)
    at_least: bool = False
    plural: bool = False  # the word is plural as written ("cattle")


class LabelVocabulary:
    """The phrases that name each usable label of a detector: its labels, their one-word and hyphenated
    spellings, and the :data:`SYNONYMS` whose group has a member among the labels."""

    def __init__(self, labels: Iterable[str]):
        self.labels: tuple[str, ...] = tuple(
            dict.fromkeys(str(label) for label in labels if _usable(str(label)))
        )
        if not self.labels:
            raise ValueError("the detector has no usable label names (id2label is empty or only LABEL_i)")
        entries: dict[str, _Entry] = {}
        by_name = {_normalize(label): label for label in self.labels}

        def add(phrase: str, entry: _Entry) -> None:
            words = phrase.split()
            for form in {phrase, "-".join(words), "".join(words)}:
                if form not in by_name or by_name[form] == entry.label:
                    entries.setdefault(form, entry)

        for name, label in by_name.items():
            add(name, _Entry(label))
        for canonical, others in SYNONYMS.items():
            group = [canonical, *others]
            target = next((by_name[_normalize(w)] for w in group if _normalize(w) in by_name), None)
            if target is None:
                continue
            for word in group:
                add(_normalize(word), _Entry(target))
            if canonical == "person":
                for word, (count, at_least) in _PERSON_GROUPS.items():
                    add(word, _Entry(target, count, at_least))
        for word, canonical in _PLURAL_WORDS.items():
            target = entries.get(canonical)
            if target is not None:
                add(word, _Entry(target.label, plural=True))
        self._entries = entries
        self._max_len = max(len(p.split()) for p in entries)

    def __contains__(self, label: str) -> bool:
        return label in self.labels

    def match(self, tokens: Sequence[str], i: int) -> tuple[int, _Entry, bool] | None:
        """The longest phrase starting at ``tokens[i]``: (length, entry, written as a plural?)."""
        for n in range(min(self._max_len, len(tokens) - i), 0, -1):
            options = [_singular_candidates(w) for w in tokens[i : i + n]]
            for words in itertools.product(*options):
                entry = self._entries.get(" ".join(words))
                if entry is not None:
                    inflected = any(w != t for w, t in zip(words, tokens[i : i + n], strict=True))
                    return n, entry, inflected or entry.plural
        return None


@lru_cache(maxsize=8)
def _vocabulary(labels: tuple[str, ...]) -> LabelVocabulary:
    return LabelVocabulary(labels)


def coco_vocabulary() -> LabelVocabulary:
    """The vocabulary of the 80 COCO detection classes (what ``hustvl/yolos-tiny`` predicts)."""
    return _vocabulary(tuple(COCO_CLASSES))


# ------------------------------------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class ExpectedObject:
    """What a prompt asks for, per detector label: ``count`` objects (``at_least``: that many or more)."""

    label: str
    count: int
    at_least: bool = False
    mentions: tuple[str, ...] = ()  # the prompt's words, for reports


@dataclass
class _Pending:
    count: int
    at_least: bool = False
    pair: bool = False
    age: int = 0


def _match_quantity(tokens: Sequence[str], i: int) -> tuple[int, _Pending] | None:
    for phrase, count, at_least, pair in _QUANTITY_PHRASES:
        if tuple(tokens[i : i + len(phrase)]) == phrase:
            return len(phrase), _Pending(count, at_least, pair)
    word = tokens[i]
    if word == "one" and i + 1 < len(tokens) and tokens[i + 1] == "of":  # "one of the dogs"
        return None
    if word in _COUNT_WORDS:
        return 1, _Pending(_COUNT_WORDS[word])
    if word.isdigit() and 0 < int(word) <= 100:
        return 1, _Pending(int(word))
    return None


def _is_break(tokens: Sequence[str], i: int) -> bool:
    word = tokens[i]
    if word in ("and", "or") and 0 < i < len(tokens) - 1:
        # "two brown and white dogs": a conjunction between modifiers keeps the number
        return not (tokens[i - 1] in _MODIFIERS and tokens[i + 1] in _MODIFIERS)
    return word in _BREAKS


def parse_prompt(
    prompt: str, labels: Iterable[str] | LabelVocabulary | None = None
) -> tuple[ExpectedObject, ...]:
    """The detectable objects a prompt asks for, merged per label, in order of first mention.

    ``labels`` is the detector's label vocabulary (its ``id2label`` values, or a :class:`LabelVocabulary`);
    default: the 80 COCO classes. See the module docstring for the rules.
    """
    if labels is None:
        vocab = coco_vocabulary()
    elif isinstance(labels, LabelVocabulary):
        vocab = labels
    else:
        vocab = _vocabulary(tuple(str(label) for label in labels))
    tokens = tokenize(" ".join(str(prompt).split()))
    mentions: list[tuple[str, int, bool, str]] = []
    pending: _Pending | None = None
    negated_at: int | None = None  # index of the word after "no"/"without": the next noun is not wanted
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word in _NEGATIONS:
            negated_at, pending = i + 1, None
            i += 1
            continue
        quantity = _match_quantity(tokens, i)
        if quantity is not None:
            length, new = quantity
            if negated_at is not None and i != negated_at:  # "no windows, a dog": a new noun phrase
                negated_at = None
            if pending is not None and pending.age == 0 and new.pair and new.at_least:
                new = _Pending(pending.count, False, True)  # "two pairs of skis"
            pending = new
            i += length
            continue
        found = vocab.match(tokens, i)
        if found is not None:
            length, entry, plural = found
            written = " ".join(tokens[i : i + length])
            after = vocab.match(tokens, i + length) if i + length < len(tokens) else None
            colour_like = length == 1 and word in _MODIFIERS
            next_is_modifier = i + length < len(tokens) and tokens[i + length] in _MODIFIERS
            if after is not None and (not plural or colour_like) or (colour_like and next_is_modifier):
                # "a dog bed", "an orange cat": this noun modifies the next one, which takes the number
                i += length
                continue
            if negated_at is None:
                if pending is not None:
                    per = (1 if entry.label in PAIRED_LABELS else 2) if pending.pair else entry.count
                    count, at_least = pending.count * per, pending.at_least or entry.at_least
                elif entry.at_least or entry.count > 1:
                    count, at_least = entry.count, entry.at_least
                elif plural:
                    count, at_least = 2, True
                elif written in MASS_NOUNS:  # "with broccoli": some, not one
                    count, at_least = 1, True
                else:
                    count, at_least = 1, False
                mentions.append((entry.label, count, at_least, written))
            pending, negated_at = None, None
            i += length
            continue
        if _is_break(tokens, i):
            pending, negated_at = None, None
        elif pending is not None:
            pending.age += 1
            if pending.age > _NUMBER_REACH:
                pending = None
        i += 1

    merged: dict[str, ExpectedObject] = {}
    for label, count, at_least, written in mentions:
        old = merged.get(label)
        if old is None:
            merged[label] = ExpectedObject(label, count, at_least, (written,))
        else:
            merged[label] = ExpectedObject(
                label, old.count + count, old.at_least or at_least, (*old.mentions, written)
            )
    return tuple(merged.values())


# ------------------------------------------------------------------------------------------------ formula
class Detection(NamedTuple):
    """One detected box: its label (as in the detector's ``id2label``) and confidence; the box is optional."""

    label: str
    score: float
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class LabelScore:
    label: str
    expected: int
    at_least: bool
    detected: int
    category_confidence: float  # mean confidence of the label's detections (0 if none)
    quantity_confidence: float  # min(n, t) / max(n, t), t = max(expected, n) when at_least (0 if n = 0)


@dataclass(frozen=True)
class CQResult:
    """CQ and its two parts for one image; NaN everywhere when the prompt names no detectable object."""

    cq: float
    category_confidence: float  # A_cc
    quantity_confidence: float  # A_qc
    labels: tuple[LabelScore, ...] = ()


def _harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def cq_from_detections(
    expected: Sequence[ExpectedObject], detections: Iterable[Detection | tuple[str, float]]
) -> CQResult:
    """CQ of one image from the prompt's expected objects and the detections already above the threshold.

    ``detections`` may be :class:`Detection` tuples or plain ``(label, confidence)`` pairs. Detections of
    labels the prompt does not name are ignored, as in the original.
    """
    if not expected:
        nan = float("nan")
        return CQResult(nan, nan, nan)
    confidences: dict[str, list[float]] = {}
    for det in detections:
        label, score = det[0], float(det[1])
        confidences.setdefault(label, []).append(score)
    rows = []
    for obj in expected:
        if obj.count < 1:
            raise ValueError(f"expected count for {obj.label!r} must be at least 1, got {obj.count}")
        found = confidences.get(obj.label, [])
        n = len(found)
        target = max(obj.count, n) if obj.at_least else obj.count
        acc = math.fsum(found) / n if n else 0.0
        aqc = min(n, target) / max(n, target) if n else 0.0
        rows.append(LabelScore(obj.label, obj.count, obj.at_least, n, acc, aqc))
    a_cc = math.fsum(r.category_confidence for r in rows) / len(rows)
    a_qc = math.fsum(r.quantity_confidence for r in rows) / len(rows)
    return CQResult(_harmonic_mean(a_cc, a_qc), a_cc, a_qc, tuple(rows))


def cq_score(
    prompt: str,
    detections: Iterable[Detection | tuple[str, float]],
    labels: Iterable[str] | LabelVocabulary | None = None,
) -> float:
    """CQ of one image from its prompt and its (thresholded) detections; NaN if nothing is detectable."""
    return cq_from_detections(parse_prompt(prompt, labels), detections).cq


# ------------------------------------------------------------------------------------------------ scorer
class CQScorer:
    """CQ score with a transformers object-detection model (``AutoModelForObjectDetection``), loaded once.

    ``score(prompts, images)`` gives one float per image (float64; higher is better; NaN where the prompt
    names no object the detector knows). Images are batched by size, so no padding changes a detection:
    results equal one-image-at-a-time runs (the original's way) up to float rounding.
    """

    higher_is_better = True
    name = "cq"

    def __init__(
        self,
        model_id: str = DEFAULT_DETECTOR,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        device: str = "auto",
        batch_size: int = 8,
    ):
        import torch
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        if not isinstance(threshold, int | float) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.model_id = model_id
        self.threshold = float(threshold)
        self.batch_size = check_batch_size(batch_size)
        path = resolve_model_path(model_id)
        try:
            self.processor = AutoImageProcessor.from_pretrained(path)
            self.model = AutoModelForObjectDetection.from_pretrained(path)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise load_error("object-detection model", model_id, e) from None
        self.id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}
        try:
            self.vocabulary = LabelVocabulary(self.id2label.values())
        except ValueError as e:
            raise load_error("object-detection model", model_id, e) from None
        self.device = resolve_device(device)
        self.model.eval().to(self.device)
        self._accepts_mask = "pixel_mask" in inspect.signature(self.model.forward).parameters
        self._torch = torch
        self._parsed: dict[str, tuple[ExpectedObject, ...]] = {}

    def parse(self, prompt: str) -> tuple[ExpectedObject, ...]:
        """:func:`parse_prompt` against this detector's labels (cached per prompt)."""
        if prompt not in self._parsed:
            self._parsed[prompt] = parse_prompt(prompt, self.vocabulary)
        return self._parsed[prompt]

    def detect(self, images: Sequence[Any]) -> list[list[Detection]]:
        """Detections above the threshold, per image in input order (boxes in pixels, x0 y0 x1 y1)."""
        torch = self._torch
        rgb = [as_rgb(im) for im in images]
        out: list[list[Detection]] = [[] for _ in rgb]
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(rgb):
            by_size.setdefault(image.size, []).append(index)
        for indices in by_size.values():
            for batch in batches(indices, self.batch_size):
                inputs = self.processor(images=[rgb[i] for i in batch], return_tensors="pt")
                kwargs = {"pixel_values": inputs["pixel_values"].to(self.device)}
                if self._accepts_mask and "pixel_mask" in inputs:
                    kwargs["pixel_mask"] = inputs["pixel_mask"].to(self.device)
                with torch.inference_mode():
                    outputs = self.model(**kwargs)
                sizes = [(rgb[i].height, rgb[i].width) for i in batch]
                results = self.processor.post_process_object_detection(
                    outputs, threshold=self.threshold, target_sizes=sizes
                )
                for i, result in zip(batch, results, strict=True):
                    out[i] = [
                        Detection(
                            self.id2label.get(int(label), f"LABEL_{int(label)}"), float(score), tuple(box)
                        )
                        for score, label, box in zip(
                            result["scores"].tolist(),
                            result["labels"].tolist(),
                            result["boxes"].tolist(),
                            strict=True,
                        )
                    ]
        return out

    def evaluate(self, prompts: Sequence[str], images: Sequence[Any]) -> list[CQResult]:
        """CQ with A_cc, A_qc and per-label counts for each image; ``prompts[i]`` belongs to ``images[i]``."""
        prompts, images = list(prompts), list(images)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        detections = self.detect(images)
        return [cq_from_detections(self.parse(p), d) for p, d in zip(prompts, detections, strict=True)]

    def score(self, prompts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        """Per-image CQ in [0, 1] (float64), NaN where the prompt names no detectable object."""
        return np.asarray([r.cq for r in self.evaluate(prompts, images)], dtype=np.float64)


# ------------------------------------------------------------------------------------------------ tiny model
# COCO category ids 0..90, "N/A" at 0 and at the 10 ids COCO never used, as in HF DETR/YOLOS checkpoints.
