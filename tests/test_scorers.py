"""Metric-feedback scorers on tiny random-weight models loaded through ``from_pretrained``.

Random weights give meaningless numbers: these tests check the arithmetic (against independent computations
from the model outputs), determinism, batching, caching and the template-question parser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionprefer.errors import ModelLoadError
from visionprefer.scorers import ImageTextScorer, template_questions, vqa_score
from visionprefer.scorers.questions import ELEMENT_TYPES, answer_matches, pluralize, singularize

PROMPTS = [
    "a photo of a cat sitting on a red sofa",
    "two dogs playing in the snow",
    "a blue vintage car parked by the sea",
    "three apples and a pear on a wooden table",
]


@pytest.fixture(scope="module")
def tiny_env(tiny_dir):
    """Module-scoped fixtures run before the function-scoped isolation fixture: point them at the tiny dir."""
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIONPREFER_TINY_DIR", str(tiny_dir))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield tiny_dir


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    sizes = [(40, 48), (32, 32), (64, 40), (50, 50), (33, 70), (48, 48), (32, 64), (45, 39)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@pytest.fixture(scope="module")
def prompts8():
    return [PROMPTS[i % len(PROMPTS)] for i in range(8)]


@pytest.fixture(scope="module")
def clip(tiny_env):
    from visionprefer.scorers import CLIPScorer

    return CLIPScorer("tiny-clip", batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def clip_bs1(tiny_env):
    from visionprefer.scorers import CLIPScorer

    return CLIPScorer("tiny-clip", batch_size=1, device="cpu")


@pytest.fixture(scope="module")
def blip(tiny_env):
    from visionprefer.scorers import BlipVQA

    return BlipVQA("tiny-blip", batch_size=8, device="cpu")


def _manual_head(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The published MLP layout written out by hand (Linear/Dropout only; dropout is identity at eval)."""
    for i in (0, 2, 4, 6, 7):
        x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    return x.reshape(-1)


def _manual_clip(clip, prompts, images):
    """Normalised features straight from get_image_features/get_text_features, independently of the scorer."""
    pixels = clip.processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = clip.processor.tokenizer(
        prompts, padding=True, truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        img = clip.model.get_image_features(pixel_values=pixels).pooler_output.double()
        txt = clip.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output.double()
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return img, txt


# ------------------------------------------------------------------------------------------------ CLIP
def test_clip_score_is_100_times_the_cosine(clip, images, prompts8):
    scores = clip.score(prompts8, images)
    img, txt = _manual_clip(clip, prompts8, images)
    expected = 100 * (img * txt).sum(-1).numpy()
    assert scores.shape == (8,)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    emb = clip.image_embeddings(images)
    assert emb.dtype == np.float32 and emb.shape == (8, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, img.numpy(), atol=1e-5)
    # identical inputs -> identical outputs
    np.testing.assert_array_equal(clip.score(prompts8, images), scores)


def test_clip_batch_size_does_not_change_scores(clip, clip_bs1, images, prompts8):
    # float32 kernels differ by batch shape: cosines agree to 1e-5 (the 100x scores to 1e-3)
    cos_bs1 = clip_bs1.score(prompts8, images) / 100
    np.testing.assert_allclose(cos_bs1, clip.score(prompts8, images) / 100, atol=1e-5)
    np.testing.assert_allclose(clip_bs1.image_embeddings(images), clip.image_embeddings(images), atol=1e-5)
    np.testing.assert_allclose(clip_bs1.text_embeddings(PROMPTS), clip.text_embeddings(PROMPTS), atol=1e-5)


def test_clip_truncates_long_prompts(clip, images):
    long_a = "a cat " * 100 + "on a red sofa"
    long_b = "a cat " * 100 + "in the blue sea"  # differs only after the 77-token context
    emb = clip.text_embeddings([long_a, long_b])
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)
    assert np.isfinite(clip.score([long_a], images[:1])).all()


def test_clip_score_mean_clamps_the_mean_only():
    from visionprefer.scorers import clip_score_mean

    assert clip_score_mean([-10.0, 30.0]) == pytest.approx(10.0)  # a negative image is not clamped alone
    assert clip_score_mean(np.array([-10.0, -20.0])) == 0.0
    with pytest.raises(ValueError):
        clip_score_mean([])


def test_clip_errors(clip, images, tmp_path):
    from visionprefer.scorers import CLIPScorer

    with pytest.raises(ValueError, match="one prompt per image"):
        clip.score(["a cat"], images[:2])
    assert clip.score([], []).shape == (0,)
    assert clip.image_embeddings([]).shape == (0, 16)
    with pytest.raises(ModelLoadError) as info:
        CLIPScorer(str(tmp_path / "missing-model"))
    assert "\n" not in str(info.value) and "missing-model" in str(info.value)


# ------------------------------------------------------------------------------------------------ aesthetic
def test_aesthetic_equals_manual_mlp_on_normalised_embedding(clip, images, tiny_env):
    from visionprefer.models.tiny import tiny_model_path
    from visionprefer.scorers import AestheticScorer

    scorer = AestheticScorer("tiny-aesthetic", clip=clip)
    assert scorer.clip is clip and scorer.clip_model == "tiny-clip"  # CLIP reused, not reloaded
    state = torch.load(tiny_model_path("tiny-aesthetic") / "aesthetic_head.pth", weights_only=True)
    assert sorted(state) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
    assert tuple(state["layers.0.weight"].shape) == (1024, 16)
    img, _ = _manual_clip(clip, ["x"] * len(images), images)
    expected = _manual_head({k: v.double() for k, v in state.items()}, img).numpy()
    got = scorer.score(PROMPTS * 2, images)
    assert got.shape == (8,)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_array_equal(scorer.image_scores(images), got)  # deterministic (dropout off)
    assert isinstance(scorer, ImageTextScorer) and scorer.higher_is_better


def test_aesthetic_batch_size_and_own_clip(clip_bs1, images, tiny_env):
    from visionprefer.scorers import AestheticScorer

    own = AestheticScorer("tiny-aesthetic", batch_size=8, device="cpu")  # loads the paired tiny-clip itself
    assert own.clip_model == "tiny-clip"
    bs1 = AestheticScorer("tiny-aesthetic", clip=clip_bs1, batch_size=1)
    np.testing.assert_allclose(bs1.image_scores(images), own.image_scores(images), atol=1e-5)


def _fake_weights(input_dim: int, seed: int = 1) -> dict:
    from visionprefer.scorers import AestheticMLP

    torch.manual_seed(seed)
    return AestheticMLP(input_dim=input_dim).state_dict()


def test_laion_head_download_is_cached_once(clip, images, tmp_path, monkeypatch):
    from visionprefer.scorers import AestheticScorer
    from visionprefer.scorers.aesthetic import LAION_V2_FILE, LAION_V2_URL

    monkeypatch.setenv("VISIONPREFER_CACHE", str(tmp_path / "cache"))
    calls = []
    state = _fake_weights(16)  # a stand-in of the right layout, sized for tiny-clip

    def fake_download(url, dest):
        calls.append(url)
        torch.save(state, dest)

    first = AestheticScorer("laion-aesthetic-v2", clip=clip, downloader=fake_download)
    cached = tmp_path / "cache" / "aesthetic" / LAION_V2_FILE
    assert calls == [LAION_V2_URL] and first.weights_path == cached and cached.is_file()
    assert sorted(p.name for p in cached.parent.iterdir() if not p.name.endswith(".lock")) == [LAION_V2_FILE]

    def must_not_download(url, dest):
        raise AssertionError("downloaded twice")

    second = AestheticScorer("laion-aesthetic-v2", clip=clip, downloader=must_not_download)
    img, _ = _manual_clip(clip, ["x"] * len(images), images)
    expected = _manual_head({k: v.double() for k, v in state.items()}, img).numpy()
    np.testing.assert_allclose(second.image_scores(images), expected, atol=1e-4)
    assert calls == [LAION_V2_URL]


def test_bad_downloads_are_not_cached(tmp_path):
    from visionprefer.scorers.aesthetic import download_laion_v2

    def junk(url, dest):
        Path(dest).write_bytes(b"<html>rate limited</html>")

    def offline(url, dest):
        raise OSError("network is unreachable")

    for downloader, message in ((junk, "cannot read"), (offline, "network is unreachable")):
        with pytest.raises(ModelLoadError, match=message):
            download_laion_v2(cache_dir=tmp_path, downloader=downloader)
        assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_head_from_local_files_and_dimension_check(clip, images, tmp_path):
    from safetensors.torch import save_file

    from visionprefer.scorers import AestheticScorer

    state = _fake_weights(16, seed=3)
    torch.save(state, tmp_path / "head.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "head.safetensors"))
    from_pth = AestheticScorer(tmp_path / "head.pth", clip=clip).image_scores(images)
    from_st = AestheticScorer(str(tmp_path / "head.safetensors"), clip=clip).image_scores(images)
    np.testing.assert_array_equal(from_pth, from_st)
    torch.save(_fake_weights(768), tmp_path / "l14.pth")
    with pytest.raises(ModelLoadError, match="768-dim"):
        AestheticScorer(tmp_path / "l14.pth", clip=clip)
    with pytest.raises(ModelLoadError, match="unknown aesthetic head"):
        AestheticScorer("no-such-head", clip=clip)


# ------------------------------------------------------------------------------------------------ BLIP VQA
def test_blip_answers_one_string_per_question(blip, images, tiny_env):
    from visionprefer.scorers import BlipVQA

    assert type(blip.model).__name__ == "BlipForQuestionAnswering"
    questions = [r["question"] for r in template_questions(PROMPTS[0])]
    questions = (questions * 2)[:8]
    answers = blip.answer(images, questions)
    assert len(answers) == 8 and all(isinstance(a, str) for a in answers)
    assert all(a == a.strip().lower() for a in answers)
    assert blip.answer(images, questions) == answers  # greedy decoding is deterministic
    bs1 = BlipVQA("tiny-blip", batch_size=1, device="cpu")
    assert bs1.answer(images, questions) == answers
    assert blip.answer_each(images[0], questions[:3]) == blip.answer([images[0]] * 3, questions[:3])
    with pytest.raises(ValueError):
        blip.answer(images[:2], questions[:3])


# ------------------------------------------------------------------------------------------------ questions
def test_template_questions_counting_multiword_and_whole_prompt():
    prompt = "two dogs and a cat on a dining table"
    records = template_questions(prompt)
    for r in records:
        assert set(r) == {"question", "choices", "answer", "element_type", "element"}
        assert r["choices"] == ["yes", "no"] and r["answer"] == "yes"
        assert r["element_type"] in ELEMENT_TYPES
    by_type = {}
    for r in records:
        by_type.setdefault(r["element_type"], []).append(r)
    assert [(r["element"], r["question"]) for r in by_type["counting"]] == [
        ("two", "Are there two dogs in the image?")
    ]
    assert {r["element"] for r in by_type["animal"]} == {"dogs", "cat"}
    assert by_type["object"][0]["element"] == "dining table"
    assert "dining table" in by_type["object"][0]["question"]
    assert by_type["spatial"][0]["question"] == "Is the cat on the dining table?"
    assert by_type["other"] == [
        {
            "question": f'Does the image show "{prompt}"?',
            "choices": ["yes", "no"],
            "answer": "yes",
            "element_type": "other",
            "element": prompt,
        }
    ]
    assert template_questions(prompt) == records  # deterministic


def test_template_questions_vocabulary_cases():
    def questions(prompt):
        return {(r["element_type"], r["element"]): r["question"] for r in template_questions(prompt)}

    q = questions("a pair of shoes and 3 hot dogs next to an orange cat")
    assert q[("counting", "a pair of")] == "Are there two shoes in the image?"
    assert q[("counting", "3")] == "Are there three hot dogs in the image?"
    assert q[("food", "hot dogs")] == "Are there hot dogs in the image?"  # not "dog" + attribute "hot"
    assert q[("color", "orange")] == "Is the cat orange?"  # "orange" before a noun is a colour
    q = questions("people eating fries in a living room with a wooden round table")
    assert q[("human", "people")] == "Are there people in the image?"
    assert q[("activity", "eating")] == "Are the people eating fries?"
    assert q[("location", "living room")] == "Are the people in the living room?"
    assert q[("material", "wooden")] == "Is the table made of wood?"
    assert q[("shape", "round")] == "Is the table round?"
    q = questions("three lighthouses")  # out of vocabulary, anchored by a number
    assert q[("counting", "three")] == "Are there three lighthouses in the image?"
    assert singularize("knives") == "knife" and singularize("traffic") == "traffic"
    assert pluralize("dining table") == "dining tables" and pluralize("sheep") == "sheep"
    with pytest.raises(ValueError):
        template_questions("   ")


def test_vqa_score_arithmetic():
    records = [{"answer": "yes"}, {"answer": "yes"}, {"answer": "yes"}, {"answer": "two"}, {"answer": "no"}]
    assert vqa_score(["yes", "Yes.", "no", "2", " No "], records) == pytest.approx(4 / 5)
    assert vqa_score(["YES, it is", "yes!", "yes", "2.0", "no"], records) == 1.0
    assert vqa_score(["no", "no", "no", "3", "yes"], records) == 0.0
    assert answer_matches('"yes"', "yes") and not answer_matches("yesterday", "yes")
    assert answer_matches("ten", "10") and not answer_matches("ten", "11")
    with pytest.raises(ValueError):
        vqa_score(["yes"], records)
    with pytest.raises(ValueError):
        vqa_score([], [])


# ------------------------------------------------------------------------------------------------ factory
@pytest.mark.parametrize("name", ["tiny-aesthetic", "tiny-blip"])
def test_new_tiny_builders_are_byte_identical(name, tmp_path):
    from visionprefer.models.tiny import TINY_BUILDERS

    digests = []
    for sub in ("a", "b"):
        folder = tmp_path / sub
        folder.mkdir()
        TINY_BUILDERS[name](folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        digests.append(
            {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        )
    assert digests[0] == digests[1] and digests[0]
