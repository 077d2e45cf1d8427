"""Deterministic template questions (TIFA record format) from a prompt's nouns, numbers and modifiers.

The offline quickstart has no LLM, and spaCy/NLTK data cannot be installed here, so this parser works from a
built-in vocabulary: the 80 COCO class names (multi-word ones such as "dining table" and "traffic light"
included), a modest list of common people, animals, foods, objects and places, colours, materials, shapes,
attribute adjectives, activity verbs and spatial relations. Plurals are handled by rules plus an irregular
table ("people" -> "person", "knives" -> "knife"); counts come from number words ("two" ... "twenty",
"a pair of", "a couple of", "a dozen") and digits.

Every question is a yes/no record whose expected answer is "yes"::

    {"question": "Are there two dogs in the image?", "choices": ["yes", "no"], "answer": "yes",
     "element_type": "counting", "element": "two"}

Element types follow TIFA/AGFSync: object, human, animal, food, activity, attribute, counting, color,
material, spatial, location, shape, other. ``element`` is the prompt's own word, as in TIFA (the noun as
written for objects, the number word for counting, the colour for colour questions, ...). One whole-prompt
question (``element_type`` "other") is always included.

:func:`vqa_score` is the fraction of questions answered as expected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ELEMENT_TYPES = (
    "object",
    "human",
    "animal",
    "food",
    "activity",
    "attribute",
    "counting",
    "color",
    "material",
    "spatial",
    "location",
    "shape",
    "other",
)
YES_NO = ["yes", "no"]

# ------------------------------------------------------------------------------------------------ vocabulary
# The 80 COCO detection classes (as the HF detection models label them, e.g. hustvl/yolos-tiny).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
_COCO_HUMAN = {"person"}
_COCO_ANIMAL = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
_COCO_FOOD = {
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
}

_EXTRA: dict[str, str] = {}
for _type, _words in {
    "human": """man woman boy girl child kid baby toddler teenager lady gentleman people adult
        chef cook astronaut doctor nurse student teacher soldier knight king queen prince princess farmer
        cowboy firefighter police officer policeman scientist artist painter musician guitarist dancer
        singer player athlete skier surfer skateboarder snowboarder runner swimmer rider cyclist
        businessman fisherman pirate wizard witch warrior ninja samurai monk clown worker family couple
        crowd friend grandmother grandfather mother father""",
    "animal": """puppy kitten lion tiger leopard cheetah fox wolf rabbit bunny deer moose monkey gorilla
        panda koala kangaroo owl eagle hawk parrot duck chicken hen rooster goose swan penguin flamingo
        pigeon fish goldfish shark whale dolphin octopus crab jellyfish butterfly bee spider snake lizard
        frog turtle squirrel pig goat donkey camel llama hamster raccoon hedgehog unicorn dragon dinosaur
        animal pet""",
    "food": """bread toast cheese egg burger hamburger fries soup salad pasta spaghetti noodle sushi rice
        steak cookie cupcake pie muffin ice cream coffee tea beer juice milk chocolate strawberry grape
        lemon lime pear cherry watermelon pineapple tomato potato mushroom corn peach avocado pancake
        waffle croissant taco burrito cucumber onion meal dessert fruit vegetable""",
    "object": """tree flower rose sunflower plant bush cactus leaf grass house building tower castle
        bridge lighthouse church cathedral temple pyramid skyscraper window door wall roof fence staircase
        lamp table sofa desk shelf bookshelf mirror guitar piano violin drum hat cap shirt dress jacket
        coat scarf shoe boot sneaker bag box basket ball balloon candle mug plate teapot kettle pot pan
        jar glass key phone television computer camera robot rocket spaceship helicopter bike motorbike
        plane tractor taxi ship sailboat canoe submarine crown sword shield flag sign statue fountain
        watch necklace pillow blanket carpet rug curtain toy doll rock moon sun star cloud rainbow planet
        tent swing ladder bucket map pen pencil notebook newspaper letter envelope wheel tire vehicle
        board surfboard kayak bench""",
    "location": """beach forest jungle mountain hill valley desert city town village street road river
        lake sea ocean pond park garden kitchen bedroom living room bathroom office classroom library
        restaurant cafe market field meadow farm island cave cliff space sky snow countryside harbor
        shore coast waterfall volcano canyon stadium airport station studio museum room yard playground
        countryside underwater""",
}.items():
    for _w in _words.split():
        _EXTRA.setdefault(_w, _type)
# multi-word extras (kept out of the whitespace-split lists above)
_EXTRA.update(
    {
        "ice cream": "food",
        "police officer": "human",
        "living room": "location",
        "cell phone": "object",
        "mobile phone": "object",
        "fire truck": "object",
        "christmas tree": "object",
        "coffee cup": "object",
    }
)
_EXTRA.pop("police", None)
_EXTRA.pop("officer", None)
_EXTRA.pop("living", None)
_EXTRA.pop("cream", None)
_EXTRA.pop("ice", None)


def _coco_type(name: str) -> str:
    if name in _COCO_HUMAN:
        return "human"
    if name in _COCO_ANIMAL:
        return "animal"
    if name in _COCO_FOOD:
        return "food"
    return "object"


NOUNS: dict[str, str] = {name: _coco_type(name) for name in COCO_CLASSES}
for _w, _t in _EXTRA.items():
    NOUNS.setdefault(_w, _t)
_MAX_PHRASE = max(len(n.split()) for n in NOUNS)

# Uncountable nouns: "Is there snow in the image?" (no article).
MASS_NOUNS = {
    "snow", "grass", "water", "sand", "space", "rice", "bread", "cheese", "soup", "salad", "pasta",
    "spaghetti", "coffee", "tea", "beer", "juice", "milk", "chocolate", "broccoli", "ice cream", "fruit",
    "corn", "toast", "sushi", "countryside", "underwater",
}  # fmt: skip

COLORS = {
    "red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "brown", "black", "white",
    "gray", "grey", "beige", "turquoise", "teal", "cyan", "magenta", "maroon", "navy", "crimson", "indigo",
}  # fmt: skip
# adjective as written -> the material it names
MATERIALS = {
    "wooden": "wood", "wood": "wood", "metal": "metal", "metallic": "metal", "glass": "glass",
    "plastic": "plastic", "stone": "stone", "marble": "marble", "brick": "brick", "steel": "steel",
    "iron": "iron", "golden": "gold", "gold": "gold", "silver": "silver", "leather": "leather",
    "paper": "paper", "cardboard": "cardboard", "ceramic": "ceramic", "porcelain": "porcelain",
    "concrete": "concrete", "wool": "wool", "woolen": "wool", "woollen": "wool", "cotton": "cotton",
    "silk": "silk", "velvet": "velvet", "bamboo": "bamboo", "clay": "clay", "crystal": "crystal",
    "copper": "copper", "bronze": "bronze", "rubber": "rubber", "denim": "denim", "wicker": "wicker",
}  # fmt: skip
SHAPES = {
    "round", "circular", "square", "rectangular", "triangular", "oval", "spherical", "cubic", "hexagonal",
    "cylindrical", "heart-shaped", "star-shaped", "curved", "spiral",
}  # fmt: skip
ATTRIBUTES = {
    "big", "large", "huge", "giant", "small", "little", "tiny", "tall", "short", "long", "old", "young",
    "new", "ancient", "vintage", "modern", "futuristic", "fluffy", "furry", "wet", "dry", "happy", "sad",
    "angry", "smiling", "sleepy", "shiny", "dirty", "clean", "broken", "empty", "full", "bright", "dark",
    "colorful", "colourful", "striped", "spotted", "wild", "cute", "beautiful", "fat", "thin", "wide",
    "narrow", "hot", "cold", "frozen", "rusty", "fresh", "delicious", "elegant", "cozy", "abandoned",
}  # fmt: skip
ACTIVITIES = {
    "sitting", "standing", "lying", "laying", "sleeping", "running", "walking", "jumping", "playing",
    "eating", "drinking", "reading", "writing", "cooking", "dancing", "singing", "swimming", "flying",
    "riding", "driving", "climbing", "holding", "carrying", "laughing", "looking", "watching", "wearing",
    "fishing", "skiing", "surfing", "skateboarding", "talking", "working", "waiting", "crossing",
    "chasing", "sailing", "floating", "hanging", "parked", "perched", "resting", "grazing", "smiling",
}  # fmt: skip
# third-person forms, asked about in the progressive ("walks" -> "Is the surfer walking?")
_VERB_S_FORMS = {
    "sits": "sitting", "stands": "standing", "walks": "walking", "runs": "running", "jumps": "jumping",
    "plays": "playing", "eats": "eating", "drinks": "drinking", "reads": "reading", "sleeps": "sleeping",
    "flies": "flying", "rides": "riding", "holds": "holding", "carries": "carrying", "swims": "swimming",
    "lies": "lying", "hangs": "hanging", "floats": "floating", "drives": "driving", "climbs": "climbing",
}  # fmt: skip
ACTIVITIES |= set(_VERB_S_FORMS)
# relation phrases, longest first when matching
RELATIONS = (
    "to the left of", "to the right of", "on the left of", "on the right of", "in the middle of",
    "in front of", "on top of", "next to", "close to", "on", "under", "underneath", "beneath", "below",
    "above", "over", "behind", "beside", "near", "inside", "in", "at", "by", "atop", "against", "among",
    "around", "across",
)  # fmt: skip
_RELATION_WORDS = [tuple(r.split()) for r in sorted(RELATIONS, key=lambda r: -len(r.split()))]

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "single": 1,
    "both": 2, "dozen": 12,
}  # fmt: skip
_NUMBER_PHRASES = {("a", "pair", "of"): 2, ("a", "couple", "of"): 2, ("pair", "of"): 2, ("a", "dozen"): 12}
_NUMBER_NAMES = {v: k for k, v in NUMBER_WORDS.items() if k not in ("single", "both", "dozen", "zero")}

_ARTICLES = {"a", "an", "the", "some", "its", "his", "her", "their", "this", "that", "these", "those", "of"}
_STOPWORDS = _ARTICLES | {
    "and", "or", "with", "without", "is", "are", "was", "were", "be", "it", "they", "he", "she", "very",
    "while", "who", "which", "during", "photo", "picture", "image", "painting", "drawing", "illustration",
    "sketch", "render", "style", "shot", "view", "scene", "close-up", "closeup", "portrait", "day", "night",
    "as", "for", "from", "into", "onto", "to", "up", "down", "out", "off", "other", "each", "another",
}  # fmt: skip

# ------------------------------------------------------------------------------------------------ plurals
_IRREGULAR_PLURALS = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
    "goose": "geese", "tooth": "teeth", "foot": "feet", "ox": "oxen", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "shelf": "shelves", "loaf": "loaves", "scarf": "scarves", "half": "halves",
    "calf": "calves", "elf": "elves", "life": "lives", "wife": "wives", "thief": "thieves",
    "cactus": "cacti", "policeman": "policemen", "fisherman": "fishermen", "businessman": "businessmen",
    "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "volcano": "volcanoes",
    "mango": "mangoes", "fry": "fries",
}  # fmt: skip
_INVARIANT = {"sheep", "fish", "deer", "moose", "skis", "scissors", "people", "fries", "sushi", "series"}
_IRREGULAR_SINGULARS = {p: s for s, p in _IRREGULAR_PLURALS.items()}


def pluralize(noun: str) -> str:
    """Plural of a singular noun or noun phrase (the last word is inflected)."""
    head, _, last = noun.rpartition(" ")
    prefix = head + " " if head else ""
    if last in _INVARIANT or last in MASS_NOUNS:
        return noun
    if last in _IRREGULAR_PLURALS:
        return prefix + _IRREGULAR_PLURALS[last]
    if re.search(r"(s|x|z|ch|sh)$", last):
        return prefix + last + "es"
    if re.search(r"[^aeiou]y$", last):
        return prefix + last[:-1] + "ies"
    return prefix + last + "s"


def _singular_candidates(word: str) -> list[str]:
    """Possible singular forms of ``word`` (``word`` itself first)."""
    out = [word]
    if word in _IRREGULAR_SINGULARS:
        out.append(_IRREGULAR_SINGULARS[word])
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("ves"):
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    return out


def singularize(word: str) -> str:
    """Singular of ``word``: the vocabulary form when one matches, otherwise by rule."""
    candidates = _singular_candidates(word)
    for candidate in candidates:
        if candidate in NOUNS and (candidate != word or candidate in _INVARIANT or not word.endswith("s")):
            return candidate
    if word in NOUNS:
        return word
    if word in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if re.search(r"(ses|xes|zes|ches|shes)$", word):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# ------------------------------------------------------------------------------------------------ parsing
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    words = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    return [w[:-2] if w.endswith("'s") else w for w in words]


@dataclass
class _Noun:
    start: int
    end: int  # exclusive token index
    written: str
    singular: str
    type: str
    plural: bool
    count: int | None = None
    count_word: str | None = None
    modifiers: list[tuple[str, str]] = field(default_factory=list)  # (kind, word)

    @property
    def plural_form(self) -> str:
        return self.written if self.plural else pluralize(self.singular)

    @property
    def many(self) -> bool:
        return self.plural or (self.count is not None and self.count > 1)

    def the(self) -> str:
        return f"the {self.plural_form if self.many else self.singular}"


def _match_noun(tokens: list[str], i: int) -> tuple[int, str, bool] | None:
    """Longest vocabulary noun phrase starting at ``i``: (length, singular phrase, written plural?)."""
    for n in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
        words = tokens[i : i + n]
        for candidate in _singular_candidates(words[-1]):
            phrase = " ".join([*words[:-1], candidate])
            if phrase in NOUNS:
                plural = candidate != words[-1] or (words[-1] in _INVARIANT and words[-1].endswith("s"))
                if words[-1] in ("people", "fries"):
                    plural = True
                return n, phrase, plural
    return None


def _match_number(tokens: list[str], i: int) -> tuple[int, int, str] | None:
    for phrase, value in _NUMBER_PHRASES.items():
        if tuple(tokens[i : i + len(phrase)]) == phrase:
            return len(phrase), value, " ".join(phrase)
    word = tokens[i]
    if word in NUMBER_WORDS and word not in ("both",):
        return 1, NUMBER_WORDS[word], word
    if word.isdigit() and 0 < int(word) <= 100:
        return 1, int(word), word
    return None


def _match_relation(tokens: list[str], i: int) -> tuple[int, str] | None:
    for words in _RELATION_WORDS:
        if tuple(tokens[i : i + len(words)]) == words:
            return len(words), " ".join(words)
    return None


def _is_modifier(word: str) -> bool:
    return word in COLORS or word in MATERIALS or word in SHAPES or word in ATTRIBUTES


def _modifier_kind(word: str) -> str:
    if word in COLORS:
        return "color"
    if word in MATERIALS:
        return "material"
    if word in SHAPES:
        return "shape"
    return "attribute"


@dataclass
class _Parse:
    nouns: list[_Noun]
    activities: list[tuple[int, str]]  # (token index, verb)
    relations: list[tuple[int, int, str]]  # (start, end, relation)


def _parse(tokens: list[str]) -> _Parse:
    nouns: list[_Noun] = []
    activities: list[tuple[int, str]] = []
    relations: list[tuple[int, int, str]] = []
    pending_mods: list[tuple[str, str]] = []
    pending_count: tuple[int, str] | None = None
    i = 0
    while i < len(tokens):
        word = tokens[i]
        number = _match_number(tokens, i)
        if number is not None and not (word == "one" and i + 1 < len(tokens) and tokens[i + 1] == "of"):
            length, value, written = number
            pending_count = (value, written)
            pending_mods = []
            i += length
            continue
        noun = _match_noun(tokens, i)
        # A one-word noun that is also a modifier ("orange", "glass") is a modifier when a noun or a modifier
        # follows; multi-word names ("hot dog") win over their first word.
        next_word = tokens[i + 1] if i + 1 < len(tokens) else None
        if (
            noun is not None
            and noun[0] == 1
            and _is_modifier(word)
            and next_word is not None
            and (_match_noun(tokens, i + 1) is not None or _is_modifier(next_word))
        ):
            noun = None
        if noun is not None:
            length, singular, plural = noun
            written = " ".join(tokens[i : i + length])
            nouns.append(_Noun(i, i + length, written, singular, NOUNS[singular], plural))
            if pending_count is not None:
                nouns[-1].count, nouns[-1].count_word = pending_count
            nouns[-1].modifiers = pending_mods
            pending_mods, pending_count = [], None
            i += length
            continue
        if _is_modifier(word):
            pending_mods.append((_modifier_kind(word), word))
            i += 1
            continue
        if (pending_count is not None or pending_mods) and word not in _STOPWORDS and word.isalpha():
            # An out-of-vocabulary noun anchored by a number or a modifier: "three lighthouses", "red sofa".
            singular = singularize(word)
            nouns.append(_Noun(i, i + 1, word, singular, "object", singular != word))
            if pending_count is not None:
                nouns[-1].count, nouns[-1].count_word = pending_count
            nouns[-1].modifiers = pending_mods
            pending_mods, pending_count = [], None
            i += 1
            continue
        pending_mods, pending_count = [], None
        relation = _match_relation(tokens, i)
        if relation is not None:
            relations.append((i, i + relation[0], relation[1]))
            i += relation[0]
            continue
        if word in ACTIVITIES:
            activities.append((i, word))
        i += 1
    return _Parse(nouns, activities, relations)


# ------------------------------------------------------------------------------------------------ questions
def _record(question: str, element_type: str, element: str) -> dict[str, Any]:
    return {
        "question": question,
        "choices": list(YES_NO),
        "answer": "yes",
        "element_type": element_type,
        "element": element,
    }


def _article(noun: str) -> str:
    if noun in MASS_NOUNS:
        return noun
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _be(noun: _Noun) -> str:
    return "Are" if noun.many else "Is"


def _number_name(value: int) -> str:
    return _NUMBER_NAMES.get(value, str(value))


def template_questions(prompt: str) -> list[dict[str, Any]]:
    """TIFA-format yes/no records for ``prompt`` (all with expected answer "yes"), deterministic.

    Questions: existence of each recognised noun (typed object/human/animal/food/location), counting for
    numbered nouns, colour/material/shape/attribute of modified nouns, activities of their subjects, spatial
    relations and locations, and always one whole-prompt question (type "other").
    """
    text = " ".join(str(prompt).split())
    if not text:
        raise ValueError("template_questions needs a non-empty prompt")
    tokens = tokenize(text)
    parsed = _parse(tokens)
    records: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(question: str, element_type: str, element: str) -> None:
        key = question.lower()
        if key not in seen:
            seen.add(key)
            records.append(_record(question, element_type, element))

    def noun_before(index: int, *, agent: bool = False) -> _Noun | None:
        """The nearest noun ending before ``index``; with ``agent``, the nearest human/animal if any."""
        before = [n for n in parsed.nouns if n.end <= index and n.type != "location"]
        agents = [n for n in before if n.type in ("human", "animal")]
        if agent and agents:
            return agents[-1]
        return before[-1] if before else None

    activity_at = dict(parsed.activities)

    def noun_after(index: int) -> _Noun | None:
        after = [n for n in parsed.nouns if n.start >= index]
        if not after:
            return None
        gap = tokens[index : after[0].start]
        ok = all(w in _ARTICLES or _is_modifier(w) or _match_number([w], 0) for w in gap)
        return after[0] if ok and len(gap) <= 4 else None

    # Place questions come from the relations; other location nouns get an existence question.
    placed: set[int] = set()
    relation_records: list[tuple[str, str, str]] = []
    for start, end, relation in parsed.relations:
        obj = noun_after(end)
        if obj is None:
            continue
        if start - 1 in activity_at:  # "dogs playing in the snow": the relation belongs to the verb's subject
            subject = noun_before(start - 1, agent=True)
        else:
            subject = noun_before(start, agent=obj.type == "location")
        if obj.type == "location":
            placed.add(obj.start)
            where = f"{relation} {obj.the()}"
            question = f"{_be(subject)} {subject.the()} {where}?" if subject else f"Is this {where}?"
            relation_records.append((question, "location", obj.written))
        elif subject is not None:
            question = f"{_be(subject)} {subject.the()} {relation} {obj.the()}?"
            relation_records.append((question, "spatial", relation))

    for noun in parsed.nouns:
        if noun.type == "location" and noun.start in placed:
            pass
        elif noun.singular in MASS_NOUNS:
            add(f"Is there {noun.singular} in the image?", noun.type, noun.written)
        elif noun.many:
            add(f"Are there {noun.plural_form} in the image?", noun.type, noun.written)
        else:
            add(f"Is there {_article(noun.singular)} in the image?", noun.type, noun.written)
        if noun.count is not None:
            count_text = noun.plural_form if noun.count != 1 else noun.singular
            verb = "Are" if noun.count != 1 else "Is"
            add(
                f"{verb} there {_number_name(noun.count)} {count_text} in the image?",
                "counting",
                noun.count_word,
            )
        for kind, word in noun.modifiers:
            if kind == "material":
                add(f"{_be(noun)} {noun.the()} made of {MATERIALS[word]}?", "material", word)
            else:
                add(f"{_be(noun)} {noun.the()} {word}?", kind, word)

    for index, verb in parsed.activities:
        subject = noun_before(index, agent=True)
        obj = noun_after(index + 1)  # "carrying a board" (not "sitting on ...", a relation)
        what = ""
        if obj is not None and obj.type != "location":
            what = " " + (obj.plural_form if obj.many else _article(obj.singular))
        doing = _VERB_S_FORMS.get(verb, verb)
        if subject is not None:
            add(f"{_be(subject)} {subject.the()} {doing}{what}?", "activity", verb)
        else:
            add(f"Is someone or something {doing}{what}?", "activity", verb)

    for question, element_type, element in relation_records:
        add(question, element_type, element)

    add(f'Does the image show "{text}"?', "other", text)
    return records


# ------------------------------------------------------------------------------------------------ scoring
_EDGE_PUNCT = " \t\n\"'`.,!?;:()[]{}"


def normalize_answer(answer: Any) -> str:
    """Lower-cased, trimmed of quotes/punctuation; a leading yes/no word wins ("Yes, it is." -> "yes")."""
    text = " ".join(str(answer).lower().split()).strip(_EDGE_PUNCT)
    first = re.split(r"[\s,.!?;:]+", text, maxsplit=1)[0] if text else ""
    if first in ("yes", "no"):
        return first
    return text


def parse_number(text: str) -> float | None:
    """A number from digits ("2", "2.0") or a number word ("two"); None otherwise."""
    text = normalize_answer(text)
    if text in NUMBER_WORDS:
        return float(NUMBER_WORDS[text])
    try:
        return float(text)
    except ValueError:
        return None


def answer_matches(answer: Any, expected: Any) -> bool:
    got, want = normalize_answer(answer), normalize_answer(expected)
    if got == want:
        return True
    a, b = parse_number(got), parse_number(want)
    return a is not None and b is not None and a == b


def vqa_score(answers: Sequence[Any], records: Sequence[dict[str, Any]]) -> float:
    """Fraction of ``records`` whose ``answers[i]`` equals the expected ``answer`` (normalised; numbers as
    numbers, so "2" matches "two"). One answer per record; raises ``ValueError`` on a length mismatch or
    when there are no questions."""
    answers = list(answers)
    records = list(records)
    if len(answers) != len(records):
        raise ValueError(f"{len(answers)} answers for {len(records)} questions")
    if not records:
        raise ValueError("vqa_score needs at least one question")
    hits = sum(answer_matches(a, r["answer"]) for a, r in zip(answers, records, strict=True))
    return hits / len(records)
