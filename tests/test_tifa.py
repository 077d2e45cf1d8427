"""TIFA v1.0: conformance with the official worked example, bad inputs, the download path, question
generation through the LLM layer, and an end-to-end run on tiny random-weight models.

The conformance test reads the official sample in place (``../shared/data/tifa/sample`` beside the
repository) and replays the free-form answers logged there: the result file must come out byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionprefer.errors import ConfigError, SourceError
from visionprefer.evaluate import tifa
from visionprefer.evaluate.tifa import (
    ANIMAL_HUMAN,
    EmbeddingSimilarity,
    evaluate_tifa,
    fetch_tifa_file,
    git_blob_sha1,
    load_questions,
    load_text_inputs,
    map_to_choice,
    normalize_choice_text,
    parse_question_records,
    resolve_images,
    run_tifa,
    score_answers,
)

SHARED_TIFA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tifa"
SAMPLE = SHARED_TIFA / "sample"


def _pixels_key(image: Image.Image) -> str:
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def _no_similarity(answer, choices):  # pragma: no cover - called only on a failure
    raise AssertionError(f"similarity used for {answer!r} / {choices}")


def _write_png(path: Path, color=(200, 30, 30), size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _rec(cid, question, choices=("yes", "no"), answer="yes", element_type="object", element="x", **extra):
    return {
        "id": cid,
        "caption": f"caption of {cid}",
        "question": question,
        "choices": list(choices) if choices is not None else None,
        "answer": answer,
        "element_type": element_type,
        "element": element,
        **extra,
    }


# ------------------------------------------------------------------------------------------------ conformance
def test_conformance_replays_the_official_worked_example(tmp_path):
    logged = json.loads((SAMPLE / "sample_evaluation_result.json").read_text(encoding="utf-8"))
    official_text = (SAMPLE / "sample_evaluation_result.json").read_text(encoding="utf-8")
    image_map = json.loads((SAMPLE / "sample_imgs.json").read_text(encoding="utf-8"))

    # The VQA replay: which caption an image belongs to is recognised from its pixels.
    caption_of = {_pixels_key(Image.open(SAMPLE / fn)): cid for cid, fn in image_map.items()}
    free_form = {
        (cid, q): d["free_form_vqa"] for cid, qs in logged["question_details"].items() for q, d in qs.items()
    }
    asked = []

    def replay(images, questions):
        out = []
        for image, question in zip(images, questions, strict=True):
            cid = caption_of[_pixels_key(image)]
            asked.append((cid, question))
            out.append(free_form[(cid, question)])
        return out

    # Exactly one logged answer matches no choice: "0" to a "how many" question with choices 1-4; the
    # official multiple-choice answer for it ("1") came from the sentence-embedding similarity.
    unmatched = [
        (d["free_form_vqa"], tuple(d["choices"]), d["multiple_choice_vqa"])
        for qs in logged["question_details"].values()
        for d in qs.values()
        if d["free_form_vqa"] not in d["choices"]
    ]
    assert unmatched == [("0", ("1", "2", "3", "4"), "1")]
    sim_calls = []

    def similarity(answer, choices):
        sim_calls.append((answer, tuple(choices)))
        return [1.0 if c == "1" else 0.2 for c in choices]

    summary = run_tifa(
        tmp_path / "out",
        images=SAMPLE / "sample_imgs.json",
        questions=SAMPLE / "sample_question_answers.json",
        answerer=replay,
        similarity=similarity,
        progress=False,
    )
    written = (tmp_path / "out" / "tifa_result.json").read_text(encoding="utf-8")
    assert written == official_text  # the official result file, byte for byte

    assert summary["tifa_average"] == logged["tifa_average"] == 0.8125
    assert summary["tifa_stdev"] == logged["tifa_stdev"] == 0.2651650429449553
    assert summary["accuracy_by_type"] == logged["accuracy_by_type"]
    assert list(summary["accuracy_by_type"]) == list(logged["accuracy_by_type"])
    result = json.loads(written)
    for cid, score in logged["caption_scores"].items():
        assert result["caption_scores"][cid] == score and type(result["caption_scores"][cid]) is type(score)
    assert (summary["n_captions"], summary["n_questions"]) == (2, 19)
    assert summary["skipped_questions"] == {} and summary["skipped_captions"] == {}

    # Every other answer maps exactly; the similarity function saw that one answer only.
    assert sim_calls == [("0", ("1", "2", "3", "4"))]
    assert summary["answer_mapping"] == {"exact": 18, "similarity": 1}
    items = [json.loads(line) for line in (tmp_path / "out" / "tifa_items.jsonl").read_text().splitlines()]
    assert [i["row"] for i in items] == list(range(19))
    (odd,) = [i for i in items if i["mapping"] != "exact"]
    assert (odd["free_form_answer"], odd["mapped_choice"], odd["expected"], odd["score"]) == (
        "0",
        "1",
        "2",
        0,
    )
    assert len(asked) == 19


def test_conformance_scoring_alone_from_logged_answers():
    logged = json.loads((SAMPLE / "sample_evaluation_result.json").read_text(encoding="utf-8"))
    qs = load_questions(SAMPLE / "sample_question_answers.json")
    answers = [logged["question_details"][q.caption_id][q.question]["free_form_vqa"] for q in qs.questions]
    result = score_answers(qs.questions, answers, similarity=lambda a, c: [float(x == "1") for x in c])
    assert result.official() == logged
    assert result.official_json() == (SAMPLE / "sample_evaluation_result.json").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ arithmetic
def test_scoring_arithmetic_duplicates_types_and_stdev():
    records = [
        _rec("a", "is there a man?", element_type="human"),
        _rec("a", "is there a dog?", element_type="animal"),
        _rec("a", "is there a dog?", element_type="animal"),  # duplicate row: counts again
        _rec("a", "how many?", choices=("1", "2", "3"), answer="2", element_type="counting"),
        _rec("b", "is it red?", element_type="color"),
        _rec("b", "is there a cat?", element_type=ANIMAL_HUMAN),
    ]
    qs = parse_question_records(records)
    answers = ["Yes.", "no", "no", "two", "YES", "  yes "]
    calls = []

    def sim(answer, choices):
        calls.append(answer)
        return [0.1, 0.9, 0.9]  # a tie: the first highest wins

    result = score_answers(qs.questions, answers, similarity=sim)
    assert calls == ["two"]
    assert [i["mapping"] for i in result.items] == [
        "normalized", "exact", "exact", "similarity", "normalized", "normalized",
    ]  # fmt: skip
    assert [i["score"] for i in result.items] == [1, 0, 0, 1, 1, 1]
    assert result.caption_scores == {"a": 0.5, "b": 1}
    assert type(result.caption_scores["b"]) is int  # as statistics.mean in the official code
    assert result.tifa_average == 0.75
    assert result.tifa_stdev == statistics.stdev([0.5, 1.0])
    # micro-average per type, human and animal merged; the duplicate counts twice
    assert result.accuracy_by_type == {ANIMAL_HUMAN: 2 / 4, "counting": 1, "color": 1}
    # official layout: one entry per question text, the duplicate's answer written over the first
    assert list(result.question_details["a"]) == ["is there a man?", "is there a dog?", "how many?"]
    assert result.question_details["a"]["how many?"]["multiple_choice_vqa"] == "2"
    single = score_answers(qs.questions[:1], ["yes"], similarity=_no_similarity)
    assert single.tifa_stdev is None and single.tifa_average == 1


def test_normalisation_and_mapping():
    assert normalize_choice_text('  "Yes."  ') == "yes"
    assert normalize_choice_text("No  Parking!") == "no parking"
    assert map_to_choice("no parking", ["stop", "no parking"], _no_similarity) == ("no parking", "exact")
    assert map_to_choice("No parking.", ["stop", "no parking"], _no_similarity) == (
        "no parking",
        "normalized",
    )
    assert map_to_choice("...", ["a", "b"], lambda a, c: [0.0, 1.0]) == ("b", "similarity")
    with pytest.raises(ValueError, match="2 choices"):
        map_to_choice("x", ["a", "b"], lambda a, c: [1.0])


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "content, message",
    [
        (b'[{"id": "a", "question": "is it?", "choi', "invalid JSON (truncated or damaged?)"),
        (b"", "empty file"),
        (b'{"id": "a"}', "expected a JSON array"),
    ],
)
def test_invalid_question_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "qa.json"
    path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        load_questions(path)
    text = str(err.value)
    assert str(path) in text and message in text and "\n" not in text
    with pytest.raises(SourceError, match="no such file"):
        load_questions(tmp_path / "absent.json")


def test_bad_rows_and_bad_images_are_counted_skips(tmp_path):
    images = tmp_path / "images"
    _write_png(images / "ok.png")
    _write_png(images / "jpg_ok.jpg")
    (images / "empty.png").write_bytes(b"")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    records = [
        _rec("ok", "is it red?"),
        _rec("ok", "what color?", choices=None, answer="red"),  # no choices
        _rec("ok", "what shape?", choices=[], answer="round"),  # no choices
        _rec("ok", "how many?", choices=("1", "2"), answer="3"),  # answer outside its choices
        {"id": "ok", "choices": ["yes", "no"], "answer": "yes"},  # no question
        "not a record",
        _rec("jpg_ok", "is it there?"),
        _rec("missing", "is it there?"),
        _rec("missing", "is it big?"),
        _rec("empty", "is it there?"),
        _rec("broken", "is it there?"),
    ]
    (tmp_path / "qa.json").write_text(json.dumps(records))
    summary = run_tifa(
        tmp_path / "out",
        images=images,
        questions=tmp_path / "qa.json",
        answerer=lambda ims, qs: ["yes"] * len(qs),
        similarity=_no_similarity,
        progress=False,
    )
    assert (summary["n_questions"], summary["n_captions"]) == (2, 2)
    assert summary["tifa_average"] == 1
    assert summary["skipped_questions"] == {
        "no choices": 2,
        "answer not in choices": 1,
        "malformed record": 2,
        "missing image": 2,
        "zero-byte image": 1,
        "corrupt image": 1,
    }
    assert summary["skipped_captions"] == {"missing image": 1, "zero-byte image": 1, "corrupt image": 1}
    rows = [json.loads(line) for line in (tmp_path / "out" / "tifa_items.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(len(records)))
    assert rows[1]["skipped"] == "no choices" and rows[3]["skipped"] == "answer not in choices"
    assert rows[10]["skipped"].startswith("corrupt image: broken.png")
    assert "score" not in rows[7] and rows[6]["score"] == 1

    # A JSON image map: a caption without an entry is a missing image.
    found = resolve_images({"ok": images / "ok.png"}, ["ok", "other"])
    assert list(found.files) == ["ok"] and found.skip_counts() == {"missing image": 1}


def test_unusable_image_sources_and_nothing_to_score(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps([_rec("a", "is it?")]))
    with pytest.raises(ConfigError, match="neither a folder"):
        run_tifa(tmp_path / "o", images=tmp_path / "nope", questions=tmp_path / "qa.json", answerer=print)
    with pytest.raises(ConfigError, match="exactly one of"):
        run_tifa(tmp_path / "o", questions=tmp_path / "qa.json")
    (tmp_path / "map.json").write_text('{"a": "a.png"')
    with pytest.raises(SourceError, match="map.json: invalid JSON"):
        run_tifa(tmp_path / "o", images=tmp_path / "map.json", questions=tmp_path / "qa.json", answerer=print)
    (tmp_path / "imgs").mkdir()
    with pytest.raises(SourceError, match="no question could be scored") as err:
        run_tifa(tmp_path / "o", images=tmp_path / "imgs", questions=tmp_path / "qa.json", answerer=print)
    assert "'missing image': 1" in str(err.value)
    (tmp_path / "bad.json").write_text(json.dumps([_rec("a", "is it?", answer="maybe")]))
    with pytest.raises(SourceError, match="no usable questions"):
        run_tifa(tmp_path / "o", images=tmp_path / "imgs", questions=tmp_path / "bad.json", answerer=print)


# ------------------------------------------------------------------------------------------------ download
def test_spec_names_the_canonical_files():
    spec = tifa.tifa_spec()
    assert (
        spec["name"] == "tifa_v1.0" and spec["prompt_column"] == "caption" and spec["license"] == "Apache-2.0"
    )
    assert spec["counts"] == {"captions": 4081, "questions": 25829}
    base = f"https://raw.githubusercontent.com/Yushi-Hu/tifa/{spec['revision']}/tifa_v1.0/"
    for kind, entry in spec["files"].items():
        assert entry["url"] == base + entry["filename"], kind
        assert entry["url_latest"].startswith("https://raw.githubusercontent.com/Yushi-Hu/tifa/main/")
    assert spec["files"]["question_answers"]["rows"] == 25829 and spec["files"]["text_inputs"]["rows"] == 4081


def test_download_with_an_injected_downloader(tmp_path, monkeypatch):
    """No network: the downloader copies local bytes. The official text-inputs file passes the pinned blob
    check; a wrong or broken download is refused and nothing is cached."""
    text_inputs = SHARED_TIFA / "tifa_v1.0_text_inputs.json"
    calls = []

    def serve(data: bytes):
        def downloader(url, dest):
            calls.append(url)
            Path(dest).write_bytes(data)

        return downloader

    # The default cache is $VISIONPREFER_CACHE/tifa (the test isolation points it at a temporary folder).
    path = fetch_tifa_file("text_inputs", downloader=serve(text_inputs.read_bytes()))
    assert path == tifa.tifa_cache_dir() / "tifa_v1.0_text_inputs.json"
    assert calls == [tifa.tifa_spec()["files"]["text_inputs"]["url"]]
    inputs = load_text_inputs(downloader=serve(b"never called"))
    assert len(inputs) == 4081 and {"id", "caption"} <= set(inputs[0]) and len(calls) == 1
    assert not list(path.parent.glob(".download-*"))

    # Questions: bytes that do not match the pinned blob are refused.
    cache = tmp_path / "cache"
    sample_qa = (SAMPLE / "sample_question_answers.json").read_bytes()
    with pytest.raises(SourceError, match="has git blob .* expected 6a563f9c"):
        load_questions(cache_dir=cache, downloader=serve(sample_qa))
    assert [p.name for p in cache.iterdir()] == [".tifa_v1.0_question_answers.json.lock"]  # no file, no temp

    # ... and so is a network failure, in one line.
    def offline(url, dest):
        raise OSError("Temporary failure in name resolution\nmore detail")

    with pytest.raises(SourceError) as err:
        load_questions(cache_dir=cache, downloader=offline)
    assert "cannot download tifa_v1.0_question_answers.json" in str(err.value) and "\n" not in str(err.value)

    # With the pinned hash of these bytes, the default path downloads once, caches, and reuses.
    spec = tifa.tifa_spec()
    spec["files"]["question_answers"]["git_blob_sha1"] = git_blob_sha1(sample_qa)
    monkeypatch.setattr(tifa, "tifa_spec", lambda: spec)
    calls.clear()
    qs = load_questions(cache_dir=cache, downloader=serve(sample_qa))
    assert len(qs.questions) == 19 and qs.sha256 == hashlib.sha256(sample_qa).hexdigest()
    assert load_questions(cache_dir=cache, downloader=serve(b"unused")).rows == 19
    assert calls == [spec["files"]["question_answers"]["url"]]
    # A damaged cached file is fetched again.
    (cache / "tifa_v1.0_question_answers.json").write_bytes(sample_qa[:100])
    assert len(load_questions(cache_dir=cache, downloader=serve(sample_qa)).questions) == 19
    assert len(calls) == 2

    # Another URL: no pinned hash, but a truncated download is still refused.
    url = "https://example.org/my_questions.json"
    with pytest.raises(SourceError, match="invalid JSON"):
        load_questions(url, cache_dir=cache, downloader=serve(sample_qa[:-40]))
    assert len(load_questions(url, cache_dir=cache, downloader=serve(sample_qa)).questions) == 19


# ------------------------------------------------------------------------------------------------ questions
class _ScriptedLLM(BaseHTTPRequestHandler):
    """Chat completions: valid TIFA questions for prompts with "dog", an answer outside its choices else."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        prompt = None
        for message in reversed(body["messages"]):  # a re-ask appends a plain-text user message
            try:
                prompt = json.loads(message["content"])["prompt"]
                break
            except (ValueError, KeyError, TypeError):
                continue
        if "dog" in prompt:
            questions = [
                {"question": "is there a dog?", "choices": ["yes", "no"], "answer": "yes",
                 "element_type": "animal", "element": "dog"},
                {"question": "who walks the dog?", "choices": ["man", "woman", "boy", "girl"],
                 "answer": "man", "element_type": "human", "element": "man"},
                {"question": "is the dog black?", "choices": ["yes", "no"], "answer": "yes",
                 "element_type": "color", "element": "black"},
            ]  # fmt: skip
        else:
            questions = [{"question": "is it?", "choices": ["yes", "no"], "answer": "maybe",
                          "element_type": "object", "element": "it"}]  # fmt: skip
        content = json.dumps({"questions": questions})
        payload = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_question_generation_through_the_llm_layer(tmp_path):
    from visionprefer.config import LLMConfig

    _ScriptedLLM.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        llm = LLMConfig(
            model="any-model", base_url=f"http://127.0.0.1:{server.server_port}/v1", max_attempts=1
        )
        captions = [{"id": "p1", "caption": "A man walking a black dog."}, {"id": "p2", "caption": "A tree."}]
        got = tifa.generate_tifa_questions(captions, llm, folder=tmp_path / "llm")
        assert len(_ScriptedLLM.requests) == 3  # p1 once; p2 asked, then re-asked with the validation error
        assert list(got.failures) == ["p2"] and got.failures["p2"].startswith("invalid answer")
        assert [r["question"] for r in got.records] == [
            "is there a dog?",
            "who walks the dog?",
            "is the dog black?",
        ]
        assert list(got.records[0]) == [
            "id",
            "caption",
            "question",
            "choices",
            "answer",
            "element_type",
            "element",
        ]
        assert {r["element_type"] for r in got.records} == {ANIMAL_HUMAN, "color"}
        assert all(r["id"] == "p1" and r["caption"] == "A man walking a black dog." for r in got.records)

        # The in-context prompt: instructions, worked examples, then the caption as JSON data.
        messages = _ScriptedLLM.requests[0]["messages"]
        assert messages[0]["role"] == "system" and "element_type" in messages[0]["content"]
        assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(tifa.TIFA_QUESTION_EXAMPLES)
        for m in messages[2:-1:2]:
            tifa.validate_tifa_questions(m["content"])  # the examples obey the format they ask for
        assert _ScriptedLLM.requests[0]["response_format"]["type"] == "json_schema"

        # Cached by the LLM layer: asking again for p1 sends nothing.
        again = tifa.generate_tifa_questions(captions[:1], llm, folder=tmp_path / "llm")
        assert again.records == got.records and len(_ScriptedLLM.requests) == 3
    finally:
        server.shutdown()
        server.server_close()

    # The records load back as a question file.
    path = tifa.save_questions(tmp_path / "mine.json", got.records)
    qs = load_questions(path)
    assert (
        len(qs.questions) == 3 and qs.skipped == [] and qs.captions() == {"p1": "A man walking a black dog."}
    )


# ------------------------------------------------------------------------------------------------ end to end
def test_end_to_end_on_tiny_models(tmp_path):
    """Images generated by tiny-sd15, answered by tiny-blip, mapped with tiny-text-embed: junk answers,
    checked arithmetic."""
    records = [
        _rec("c1", "is there a cat?", element_type="animal"),
        _rec("c1", "what color is the sofa?", choices=("red", "blue", "green", "black"), answer="red",
             element_type="color"),
        _rec("c1", "is there a cat?", element_type="animal"),  # duplicate row
        _rec("c2", "how many dogs are there?", choices=("1", "2", "3", "4"), answer="2", element_type="counting"),
        _rec("c2", "is it snowing?", element_type="attribute"),
    ]  # fmt: skip
    (tmp_path / "qa.json").write_text(json.dumps(records))
    kwargs = dict(
        questions=tmp_path / "qa.json", vqa_model="tiny-blip", embed_model="tiny-text-embed", device="cpu",
        batch_size=4, steps=2, progress=False,
    )  # fmt: skip
    summary = run_tifa(tmp_path / "out", model="tiny-sd15", **kwargs)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["c1.png", "c2.png"]
    assert summary["model"]["pipeline"] == "StableDiffusionPipeline"
    assert summary["vqa_model"] == "tiny-blip" and summary["similarity_model"] == "tiny-text-embed"
    items = [json.loads(line) for line in (out / "tifa_items.jsonl").read_text().splitlines()]
    assert len(items) == 5 and summary["n_questions"] == 5 and summary["n_captions"] == 2
    for item in items:
        assert item["mapped_choice"] in item["choices"]
        assert item["score"] == int(item["mapped_choice"] == item["expected"])
        if item["mapping"] == "similarity":
            assert normalize_choice_text(item["free_form_answer"]) not in item["choices"]
    assert items[0]["free_form_answer"] == items[2]["free_form_answer"]  # a duplicate gets the same answer
    per_caption = {
        c: statistics.mean([i["score"] for i in items if i["caption_id"] == c]) for c in ("c1", "c2")
    }
    result = json.loads((out / "tifa_result.json").read_text())
    assert result["caption_scores"] == per_caption
    assert summary["tifa_average"] == statistics.mean(per_caption.values())
    assert summary["tifa_stdev"] == statistics.stdev(per_caption.values())
    types = {}
    for item in items:
        types.setdefault(item["element_type"], []).append(item["score"])
    assert summary["accuracy_by_type"] == {t: statistics.mean(s) for t, s in types.items()}
    assert set(types) == {ANIMAL_HUMAN, "color", "counting", "attribute"}
    assert summary["answer_mapping"].get("similarity", 0) >= 1  # random weights: junk answers, mapped

    # The similarity mapping is the cosine under the embedding (checked independently of the mapper).
    from visionprefer.models.text_embed import SentenceEmbedder

    emb = SentenceEmbedder("tiny-text-embed", device="cpu")
    for item in items:
        if item["mapping"] == "similarity":
            vectors = emb.encode([item["free_form_answer"], *item["choices"]])
            cosines = vectors[1:] @ vectors[0]
            assert item["mapped_choice"] == item["choices"][int(np.argmax(cosines))]
    sim = EmbeddingSimilarity("tiny-text-embed", device="cpu")
    scores = sim("red", ["red", "blue"])
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and len(sim._vectors) == 2

    # The same images as an existing folder give the same scores, and nothing is regenerated.
    before = (out / "images" / "c1.png").stat().st_mtime_ns
    again = run_tifa(tmp_path / "again", images=out / "images", **kwargs)
    assert again["tifa_average"] == summary["tifa_average"] and again["model"] is None
    assert (out / "images" / "c1.png").stat().st_mtime_ns == before


def test_evaluate_tifa_accepts_a_mapping_and_an_object_answerer(tmp_path):
    _write_png(tmp_path / "a.png")

    class Answerer:
        model_id = "fixed"

        def answer(self, images, questions):
            assert all(im.mode == "RGB" for im in images)
            return ["no"] * len(questions)

    qs = parse_question_records([_rec("a", "is it?"), _rec("a", "is it not?", answer="no")])
    result = evaluate_tifa(qs, {"a": tmp_path / "a.png"}, Answerer(), similarity=_no_similarity)
    assert result.caption_scores == {"a": 0.5} and result.tifa_stdev is None
