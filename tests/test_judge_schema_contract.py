"""The judge's response contract, checked against an implementation we did not write.

Issue 11: every instance of the JSON schema a judge request carries must be accepted by the judge's answer
handling. Instances here come from hypothesis-jsonschema (``from_schema``), not from our scripted server,
for N = 1..8 images and the scales 1-5, 1-10 and 0-100 (0-100 with N >= 2 puts the score enum under
``$defs``), serialised as the default, compact, indented and non-ASCII ``json.dumps``; the pairwise judge
the same. The schemas themselves are walked for the portable subset that the engines share.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from visionprefer.annotate.judge import INLINE_ENUM_LIMIT, judge_schema, settle_ranks, validate_judgement
from visionprefer.config import ASPECTS, LLMConfig
from visionprefer.evaluate.winrate import WINNERS, pairwise_schema, validate_pairwise
from visionprefer.llm import chat_request

SCALES = [(1, 5), (1, 10), (0, 100)]
NS = range(1, 9)
WEIGHTS = dict.fromkeys(ASPECTS, 1.0)

# Bounded: 40 examples per (N, scale), no example database written into the work tree.
CONTRACT = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _speed_up_hypothesis_jsonschema() -> None:
    """hypothesis-jsonschema (0.23.1) builds a new strategy for every property value it draws, and each
    build of its nested ``@st.composite`` makes hypothesis read the function's source (``inspect``): an
    8-image schema costs ~0.2 s an example. Its ``merged_as_strategies`` is a pure function of the schemas
    it merges (and of the alphabet and formats, kept alive here so that their ids stay theirs), so it is
    memoised: the same instances, 10-20x sooner. If the private function is gone, nothing is patched."""
    try:
        from hypothesis_jsonschema import _from_schema
        from hypothesis_jsonschema._encode import encode_canonical_json
    except ImportError:  # pragma: no cover - another layout: run unpatched (slower, same checks)
        return
    original = getattr(_from_schema, "merged_as_strategies", None)
    if original is None or getattr(original, "_memoised", False):
        return
    cache: dict[tuple, tuple] = {}

    def merged_as_strategies(schemas, *, alphabet, custom_formats):
        key = (encode_canonical_json(schemas), id(alphabet), id(custom_formats))
        if key not in cache:
            strategy = original(schemas, alphabet=alphabet, custom_formats=custom_formats)
            cache[key] = (alphabet, custom_formats, strategy)
        return cache[key][2]

    merged_as_strategies._memoised = True  # type: ignore[attr-defined]
    _from_schema.merged_as_strategies = merged_as_strategies


_speed_up_hypothesis_jsonschema()


def sent_schema(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema as a judge request carries it: built by ``chat_request`` and through JSON, as on the wire."""
    request = chat_request(LLMConfig(), [{"role": "user", "content": "x"}], schema=schema, schema_name=name)
    sent = json.loads(json.dumps(request))["response_format"]["json_schema"]
    assert sent["strict"] is True
    return sent["schema"]


DUMPS = {
    "default": json.dumps,
    "compact": lambda x: json.dumps(x, separators=(",", ":")),
    "indented": lambda x: json.dumps(x, indent=2),
    "non-ascii": lambda x: json.dumps(x, ensure_ascii=False),
    "non-ascii-tabs": lambda x: json.dumps(x, ensure_ascii=False, indent="\t"),
}

# Explanations the generator rarely hits on its own: scripts outside Latin-1, emoji, combining marks,
# right-to-left text, Unicode whitespace around the text (stripped by the judge), line separators, text
# that looks like JSON or a code fence, and explanations that are only whitespace.
SPECIAL_TEXT = st.sampled_from(
    [
        "Ünïcødé: 画像は美しい — 🎨🖼️",
        "\u3000全角スペースで囲む\u3000",
        "مرحبا بالعالم",
        "e\u0301 combining, \u200bzero width\u200b",
        "line\u2028separator\u2029para",
        '```json\n{"image_1": {"rank": "9"}}\n```',
        '{"images": [], "winner": "C"}',
        "}",
        "   ",
        "\n\t",
        "",
    ]
)
NON_ASCII_TEXT = st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=1)
EXPLANATION_OVERRIDE = st.one_of(st.none(), st.none(), SPECIAL_TEXT, NON_ASCII_TEXT)


def _override_explanations(instance: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """The instance with some explanations replaced (still an instance: an explanation is any string)."""
    out = json.loads(json.dumps(instance))
    for row in out.values():
        for aspect in ASPECTS:
            text = data.draw(EXPLANATION_OVERRIDE, label=f"{aspect} explanation")
            if text is not None:
                row[aspect]["explanation"] = text
    return out


@pytest.mark.parametrize(("lo", "hi"), SCALES, ids=[f"{lo}-{hi}" for lo, hi in SCALES])
@pytest.mark.parametrize("n", NS)
def test_every_judge_schema_instance_is_accepted(n, lo, hi):
    schema = sent_schema(judge_schema(n, lo, hi), "judgement")
    assert ("$defs" in schema) == (n * (len(ASPECTS) * (hi - lo + 1) + n) > INLINE_ENUM_LIMIT)
    validator = jsonschema.Draft202012Validator(schema)

    @CONTRACT
    @given(instance=from_schema(schema), dump=st.sampled_from(sorted(DUMPS)), data=st.data())
    def check(instance, dump, data):
        assert validator.is_valid(instance)  # the generator's instances are instances for jsonschema too
        instance = _override_explanations(instance, data)
        assert validator.is_valid(instance)
        text = DUMPS[dump](instance)

        result = validate_judgement(text, n, lo, hi)  # raises InvalidAnswer if refused: the bug

        assert len(result) == n
        for i, got in enumerate(result, start=1):
            row = instance[f"image_{i}"]
            assert got["rank"] == int(row["rank"])
            for aspect in ASPECTS:
                assert type(got[aspect]["score"]) is float
                assert got[aspect]["score"] == float(row[aspect]["score"])
                assert lo <= got[aspect]["score"] <= hi
                assert got[aspect]["explanation"] == row[aspect]["explanation"].strip()

        settled, issues = settle_ranks(result, WEIGHTS)
        assert sorted(r["rank"] for r in settled) == list(range(1, n + 1))
        assert [r["stated_rank"] for r in settled] == [
            int(instance[f"image_{i}"]["rank"]) for i in range(1, n + 1)
        ]
        for got, before in zip(settled, result, strict=True):
            assert {a: got[a] for a in ASPECTS} == {a: before[a] for a in ASPECTS}
        if not issues:  # stated ranks kept only when they were a permutation agreeing with the scores
            assert [r["rank"] for r in settled] == [r["stated_rank"] for r in settled]

    check()


def test_every_pairwise_schema_instance_is_accepted():
    schema = sent_schema(pairwise_schema(), "verdict")
    validator = jsonschema.Draft202012Validator(schema)

    @settings(CONTRACT, max_examples=60)
    @given(
        instance=from_schema(schema),
        dump=st.sampled_from(sorted(DUMPS)),
        explanation=st.one_of(st.none(), SPECIAL_TEXT, NON_ASCII_TEXT),
    )
    def check(instance, dump, explanation):
        assert validator.is_valid(instance)
        if explanation is not None:
            instance = {**instance, "explanation": explanation}
        assert instance["winner"] in WINNERS
        assert validate_pairwise(DUMPS[dump](instance)) == instance["winner"]

    check()


# The portable subset (OpenAI strict mode, vLLM's xgrammar/guidance/outlines, llama.cpp/Ollama, Anthropic,
# Gemini through OpenAI-compatible endpoints): what the schema may say, checked mechanically.
FORBIDDEN = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "uniqueItems",
    "minProperties",
    "maxProperties",
}
ALLOWED = {"type", "properties", "required", "additionalProperties", "enum", "$ref", "$defs", "description"}
ENUM_LIMIT = 1000  # OpenAI: enum values in one schema
PROPERTY_LIMIT = 5000  # OpenAI: object properties in one schema
NESTING_LIMIT = 10  # OpenAI: levels of nesting


def _walk(node: Any, path: str, depth: int, stats: dict[str, int], defs: dict[str, Any]) -> None:
    assert isinstance(node, dict), f"{path}: a schema must be an object"
    assert not FORBIDDEN & node.keys(), f"{path}: non-portable keywords {sorted(FORBIDDEN & node.keys())}"
    assert node.keys() <= ALLOWED, (
        f"{path}: keywords outside the portable subset {sorted(node.keys() - ALLOWED)}"
    )
    stats["depth"] = max(stats["depth"], depth)
    if "$ref" in node:
        ref = node["$ref"]
        assert node.keys() == {"$ref"}, f"{path}: $ref with siblings"
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs, f"{path}: $ref {ref!r}"
        return
    assert "type" in node, f"{path}: every schema states its type"
    if "enum" in node:
        values = node["enum"]
        assert isinstance(values, list) and values, f"{path}: enum must be a non-empty list"
        assert all(isinstance(v, str) for v in values), f"{path}: enum members must be strings"
        assert len(set(values)) == len(values), f"{path}: duplicate enum members"
        assert node["type"] == "string", f"{path}: an enum needs the sibling type string"
        stats["enum"] += len(values)
    if node["type"] == "object" or "properties" in node:
        assert node["type"] == "object"
        properties = node.get("properties")
        assert isinstance(properties, dict) and properties, f"{path}: an object lists its properties"
        assert node.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
        required = node.get("required")
        assert isinstance(required, list) and len(required) == len(set(required)), f"{path}: required"
        assert set(required) == set(properties), f"{path}: required must be all the properties"
        stats["properties"] += len(properties)
        for key, sub in properties.items():
            _walk(sub, f"{path}/properties/{key}", depth + 1, stats, defs)
    else:
        assert node["type"] in ("string", "integer", "number", "boolean"), f"{path}: type {node['type']!r}"


def check_portable(schema: dict[str, Any]) -> dict[str, int]:
    """Walk ``schema`` (``$ref``s not followed, ``$defs`` counted once); the counts it found."""
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema.get("type") == "object", "the root must be an object (not anyOf)"
    defs = schema.get("$defs", {})
    stats = {"enum": 0, "properties": 0, "depth": 0}
    _walk({k: v for k, v in schema.items() if k != "$defs"}, "#", 1, stats, defs)
    for name, sub in defs.items():
        _walk(sub, f"#/$defs/{name}", 1, stats, defs)
    if not defs:
        assert stats["enum"] <= INLINE_ENUM_LIMIT, f"{stats['enum']} enum values inline"
    assert stats["enum"] <= ENUM_LIMIT, f"{stats['enum']} enum values"
    assert stats["properties"] <= PROPERTY_LIMIT
    assert stats["depth"] <= NESTING_LIMIT
    return stats


@pytest.mark.parametrize(("lo", "hi"), SCALES, ids=[f"{lo}-{hi}" for lo, hi in SCALES])
@pytest.mark.parametrize("n", NS)
def test_judge_schema_is_in_the_portable_subset(n, lo, hi):
    schema = sent_schema(judge_schema(n, lo, hi), "judgement")
    stats = check_portable(schema)
    scores, ranks = hi - lo + 1, n
    expanded = n * (len(ASPECTS) * scores + ranks)  # enum values with every $ref written out
    if "$defs" in schema:
        assert expanded > INLINE_ENUM_LIMIT and stats["enum"] == scores + ranks  # each defined once
        assert schema["$defs"]["score"] == {"type": "string", "enum": [str(v) for v in range(lo, hi + 1)]}
        assert schema["$defs"]["rank"] == {"type": "string", "enum": [str(r) for r in range(1, n + 1)]}
    else:
        assert stats["enum"] == expanded
    # What the schema says, not only its form: image_1..image_N, the aspects and the rank, the scale.
    assert list(schema["properties"]) == [f"image_{i}" for i in range(1, n + 1)]
    for image in schema["properties"].values():
        rank = image["properties"]["rank"]
        rank = schema["$defs"]["rank"] if "$ref" in rank else rank
        assert rank["enum"] == [str(r) for r in range(1, n + 1)]
        assert set(image["properties"]) == {*ASPECTS, "rank"}


def test_pairwise_schema_is_in_the_portable_subset():
    schema = sent_schema(pairwise_schema(), "verdict")
    assert check_portable(schema)["enum"] == len(WINNERS)


def test_the_portability_walk_catches_the_old_loose_schema():
    """The walk is not vacuous: the kind of schema that failed in production (issue 11) breaks it."""
    aspect = {
        "type": "object",
        "properties": {"score": {"type": "integer"}, "explanation": {"type": "string"}},
    }
    loose = {
        "type": "object",
        "properties": {
            "images": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "integer", "minimum": 1},
                        **dict.fromkeys(ASPECTS, aspect),
                    },
                },
            }
        },
    }
    with pytest.raises(AssertionError):
        check_portable(loose)
    with pytest.raises(AssertionError, match="enum members must be strings"):
        check_portable(
            {
                "type": "object",
                "properties": {"score": {"type": "integer", "enum": [1, 2, 3]}},
                "required": ["score"],
                "additionalProperties": False,
            }
        )


@pytest.mark.parametrize("n", [31, 32, 64, 200])
def test_large_groups_stay_under_the_enum_limit(n):
    """Ranks 1..N for N images once cost N x N enum values (over OpenAI's 1,000 from 32 images); with the
    rank and score enums defined once under $defs a group costs scale + N values, and an answer in the
    schema's terms is accepted."""
    schema = sent_schema(judge_schema(n, 1, 5), "judgement")
    stats = check_portable(schema)
    assert stats["enum"] == 5 + n
    answer = {
        f"image_{i}": {
            **{a: {"explanation": f"{a} of {i}", "score": str(1 + i % 5)} for a in ASPECTS},
            "rank": str(i),
        }
        for i in range(1, n + 1)
    }
    results = validate_judgement(json.dumps(answer), n, 1, 5)
    assert [r["rank"] for r in results] == list(range(1, n + 1))
