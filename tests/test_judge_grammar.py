"""The judge's schema under a real constrained decoder: xgrammar, vLLM's default structured-output backend.

xgrammar compiles the schema a judge request carries as vLLM does (``compile_json_schema`` on the schema's
JSON text, ``strict_mode`` at its default, any whitespace or none), and answers are decoded from random
logits under its token mask with a real byte-level BPE tokenizer trained here (no hub). Every decoded
answer must be accepted by ``validate_judgement`` and settle to ranks 1..N; the same for the pairwise
judge. The decoding policy is stated and seeded: at each step logits are i.i.d. standard normal
(temperature 1, no bias of any kind), masked by ``fill_next_token_bitmask`` /
``apply_token_bitmask_inplace``, and one token is sampled from their softmax. A decode must end with the
matcher terminated (its stop token accepted) within ``MAX_STEPS``; a truncated answer fails the test.
The same decoder under the schema of the last release (issue 11) yields answers the judge refuses, so the
check is able to fail; it also fails the 0-100 cases with xgrammar < 0.2.1, whose matcher let the score
enum "0".."100" accept strings such as "630" (FSM state merging, mlc-ai/xgrammar#618): a real decoder bug
that the validator then refuses as out of scale (seen with 0.1.25 to 0.2.0).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

xgr = pytest.importorskip("xgrammar")
torch = pytest.importorskip("torch")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from visionprefer.annotate.judge import judge_schema, settle_ranks, validate_judgement  # noqa: E402
from visionprefer.config import ASPECTS, LLMConfig  # noqa: E402
from visionprefer.evaluate.winrate import WINNERS, pairwise_schema, validate_pairwise  # noqa: E402
from visionprefer.llm import InvalidAnswer, chat_request  # noqa: E402

MAX_STEPS = 20_000  # tokens per answer; the longest decode below (8 images) takes under 5,000
WEIGHTS = dict.fromkeys(ASPECTS, 1.0)


# The response schema of the release before issue 11 (30db08a): an array of N images with free image
# numbers, ranks and scores (what the validator then refused 937 times in 1,000 calls).
def old_schema(n_images: int) -> dict[str, Any]:
    aspect = {
        "type": "object",
        "properties": {"score": {"type": "number"}, "explanation": {"type": "string"}},
        "required": ["score", "explanation"],
        "additionalProperties": False,
    }
    item = {
        "type": "object",
        "properties": {
            "image": {"type": "integer"},
            **dict.fromkeys(ASPECTS, aspect),
            "rank": {"type": "integer"},
        },
        "required": ["image", *ASPECTS, "rank"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "images": {"type": "array", "items": item, "minItems": n_images, "maxItems": n_images}
        },
        "required": ["images"],
        "additionalProperties": False,
    }


def _corpus() -> list[str]:
    """What the tokenizer learns from: judge answers in three layouts, verdicts, and English."""
    english = [
        "A photo of an astronaut riding a horse on the moon, highly detailed, soft light.",
        "The image follows the prompt well: the cat sits on the red mat, but the lighting is flat.",
        "Fidelity: the hands have six fingers and the text on the sign is garbled.",
        "Aesthetic: a balanced composition with warm colours; harmless, nothing offensive is shown.",
        "Ünïcødé naïve café — 画像は美しい 🎨 ¿Qué? Добрый день.",
    ]
    out = list(english)
    for n in (1, 2, 3):
        answer = {
            f"image_{i}": {
                **{
                    a: {"explanation": english[(i + j) % 4], "score": str(i + j)}
                    for j, a in enumerate(ASPECTS)
                },
                "rank": str(i),
            }
            for i in range(1, n + 1)
        }
        out += [json.dumps(answer), json.dumps(answer, indent=2), json.dumps(answer, separators=(",", ":"))]
    out += [
        json.dumps({"explanation": e, "winner": w})
        for e, w in zip(english, [*WINNERS, "A", "B"], strict=True)
    ]
    return out * 4


@pytest.fixture(scope="module")
def decoder():
    """A byte-level BPE trained on the corpus (the 256 bytes and ~300 merges such as ``"},`` or
    ``explanation``: tokens that cross JSON's structure, as real vocabularies have) as a
    ``PreTrainedTokenizerFast`` with its stop token, xgrammar's ``TokenizerInfo`` and a compiler."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    assert len(tok) > 256 + 200
    assert any('"' in t and len(t) > 1 for t in tok.get_vocab())  # a quote merged with more text
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    assert info.vocab_type == xgr.VocabType.BYTE_LEVEL and info.stop_token_ids == [tok.eos_token_id]
    return tok, info, xgr.GrammarCompiler(info, max_threads=1)


def sent_schema(schema: dict[str, Any], name: str) -> str:
    """The schema as a judge request carries it (``chat_request``), as JSON text, as vLLM hands it on."""
    request = chat_request(LLMConfig(), [{"role": "user", "content": "x"}], schema=schema, schema_name=name)
    return json.dumps(json.loads(json.dumps(request))["response_format"]["json_schema"]["schema"])


def decode(decoder, schema: str, seed: int, **compile_options: Any) -> str:
    """One answer decoded from random logits under xgrammar's mask; fails unless the matcher terminated."""
    tok, info, compiler = decoder
    matcher = xgr.GrammarMatcher(compiler.compile_json_schema(schema, **compile_options))
    vocab = info.vocab_size
    bitmask = xgr.allocate_token_bitmask(1, vocab)
    rng = np.random.default_rng(seed)
    ids: list[int] = []
    for _ in range(MAX_STEPS):
        if matcher.is_terminated():
            break
        logits = torch.from_numpy(rng.standard_normal((1, vocab), dtype=np.float32))
        matcher.fill_next_token_bitmask(bitmask)
        xgr.apply_token_bitmask_inplace(logits, bitmask)
        p = torch.softmax(logits[0], dim=-1).double().numpy()
        token = int(rng.choice(vocab, p=p / p.sum()))
        assert matcher.accept_token(token), f"the mask allowed token {token} that the matcher then refused"
        ids.append(token)
    assert matcher.is_terminated(), f"no stop token after {MAX_STEPS} steps (seed {seed}): truncated answer"
    assert ids[-1] in info.stop_token_ids
    # What an OpenAI-compatible server returns: the detokenised text without the stop token.
    return tok.decode(ids[:-1])


def check_judgement(text: str, n: int, lo: int, hi: int, schema: str) -> list[str]:
    """``validate_judgement`` accepts ``text`` and ``settle_ranks`` ranks 1..N; the rank issues found."""
    try:
        result = validate_judgement(text, n, lo, hi)
    except InvalidAnswer as e:  # the contract broken: print the whole answer, it is the reproducer
        pytest.fail(f"the judge refused a decoded answer ({e}): {text!r}")
    data = json.loads(text)
    assert jsonschema.Draft202012Validator(json.loads(schema)).is_valid(data), "xgrammar left the schema"
    assert len(result) == n
    for i, got in enumerate(result, start=1):
        row = data[f"image_{i}"]
        assert got["rank"] == int(row["rank"])
        for aspect in ASPECTS:
            assert got[aspect]["score"] == float(row[aspect]["score"]) and lo <= got[aspect]["score"] <= hi
            assert got[aspect]["explanation"] == row[aspect]["explanation"].strip()
    settled, issues = settle_ranks(result, WEIGHTS)
    assert sorted(r["rank"] for r in settled) == list(range(1, n + 1))
    assert [r["stated_rank"] for r in settled] == [r["rank"] for r in result]
    return issues


CASES = [
    *((n, 1, 5, seed) for n in (1, 2, 4, 8) for seed in (0, 1, 2)),
    *((n, 1, 10, seed) for n in (1, 3, 8) for seed in (0, 1)),
    *((n, 0, 100, seed) for n in (1, 2, 5, 8) for seed in (0, 1)),  # N >= 2: the score enum under $defs
]


@pytest.mark.parametrize("any_whitespace", [True, False], ids=["any-ws", "no-ws"])
@pytest.mark.parametrize(
    ("n", "lo", "hi", "seed"), CASES, ids=[f"n{n}-{lo}-{hi}-s{s}" for n, lo, hi, s in CASES]
)
def test_decoded_judgements_are_accepted(decoder, n, lo, hi, seed, any_whitespace):
    schema = sent_schema(judge_schema(n, lo, hi), "judgement")
    text = decode(decoder, schema, seed, any_whitespace=any_whitespace)
    issues = check_judgement(text, n, lo, hi, schema)
    if n >= 4:  # random ranks of 4+ images collide: the repair is exercised, not only the happy path
        assert issues


@pytest.mark.parametrize("strict_mode", [True, False])
def test_decoded_judgements_do_not_need_xgrammar_strict_mode(decoder, strict_mode):
    """The schema says ``additionalProperties: false`` itself: the answer is the same kind either way."""
    schema = sent_schema(judge_schema(3, 1, 5), "judgement")
    for seed in range(3):
        check_judgement(decode(decoder, schema, 100 + seed, strict_mode=strict_mode), 3, 1, 5, schema)


def test_decoded_text_is_varied(decoder):
    """The random policy reaches what the validator must survive: non-ASCII text and JSON escapes."""
    schema = sent_schema(judge_schema(2, 1, 5), "judgement")
    texts = [decode(decoder, schema, seed) for seed in range(4)]
    for text in texts:
        check_judgement(text, 2, 1, 5, schema)
    joined = "".join(texts)
    assert any(ord(c) > 127 for c in joined)
    assert "\\" in joined  # an escape sequence inside some explanation


@pytest.mark.parametrize("any_whitespace", [True, False], ids=["any-ws", "no-ws"])
def test_decoded_verdicts_are_accepted(decoder, any_whitespace):
    schema = sent_schema(pairwise_schema(), "verdict")
    winners = set()
    for seed in range(8):
        text = decode(decoder, schema, seed, any_whitespace=any_whitespace)
        data = json.loads(text)
        assert jsonschema.Draft202012Validator(json.loads(schema)).is_valid(data)
        assert validate_pairwise(text) == data["winner"]
        winners.add(data["winner"])
    assert len(winners) >= 2


def test_the_same_decoder_catches_the_old_schema(decoder):
    """Under the schema of the last release the same random policy produces answers the judge refuses
    (free image numbers, ranks and scores): this check would have caught issue 11."""
    for n in (1, 2, 4):
        for seed in range(3):
            text = decode(decoder, json.dumps(old_schema(n)), seed)
            assert len(json.loads(text)["images"]) == n  # the decoder kept the old schema's own bounds
            with pytest.raises(InvalidAnswer):
                validate_judgement(text, n, 1, 5)


def test_a_loose_schema_admits_an_out_of_scale_score(decoder):
    """A schema-valid answer under the old schema with a score of 7 on 1-5: xgrammar's matcher accepts it
    to the stop token, the judge refuses it. The new schema's grammar does not admit it at all."""
    tok, info, compiler = decoder
    answer = {
        "images": [
            {
                "image": 1,
                **{a: {"score": 7, "explanation": "vivid"} for a in ASPECTS},
                "rank": 1,
            }
        ]
    }
    text = json.dumps(answer)
    loose = xgr.GrammarMatcher(compiler.compile_json_schema(json.dumps(old_schema(1))))
    assert loose.accept_string(text) and loose.accept_token(info.stop_token_ids[0]) and loose.is_terminated()
    with pytest.raises(InvalidAnswer, match="outside 1..5"):
        validate_judgement(text, 1, 1, 5)

    tight = xgr.GrammarMatcher(compiler.compile_json_schema(sent_schema(judge_schema(1, 1, 5), "judgement")))

    def new_form(score: str) -> str:
        row = {**{a: {"explanation": "vivid", "score": score} for a in ASPECTS}, "rank": "1"}
        return json.dumps({"image_1": row}, separators=(",", ":"))

    assert not tight.accept_string(new_form("7"))
    tight.reset()
    assert tight.accept_string(new_form("5"))  # the same answer in scale is accepted: it is the score
