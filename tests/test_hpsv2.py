"""HPS v2 through transformers.CLIPModel, checked against golden numbers from the official hpsv2/open_clip code.

``tests/data/hpsv2/golden.json`` was made once by ``tests/data/hpsv2/make_golden.py`` in a throwaway venv with
torchvision, open_clip and hpsv2 (see its docstring); these tests need none of them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionprefer.errors import ModelLoadError
from visionprefer.scorers import hpsv2 as hps
from visionprefer.scorers.hpsv2 import (
    HPSv2Scorer,
    clean_text,
    load_openclip_state_dict,
    preprocess_image,
    resize_max_geometry,
    write_tiny_hpsv2_checkpoint,
)

DATA = Path(__file__).resolve().parent / "data" / "hpsv2"
GOLDEN = json.loads((DATA / "golden.json").read_text(encoding="utf-8"))
CHECKPOINT = DATA / GOLDEN["checkpoint"]["path"]
TOL = 1e-5
SETTINGS = {"antialias": True, "no_antialias": False}
HAS_FTFY = hps.has_ftfy()


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _images() -> list[Image.Image]:
    out = []
    for spec in GOLDEN["images"].values():
        with Image.open(DATA / spec["path"]) as im:
            im.load()
            out.append(im)
    return out


def _quiet_scorer(**kwargs) -> HPSv2Scorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ftfy is not installed" where it is not
        return HPSv2Scorer(**kwargs)


@pytest.fixture(scope="module")
def scorers() -> dict[str, HPSv2Scorer]:
    torch.set_num_threads(1)
    return {
        name: _quiet_scorer(checkpoint=CHECKPOINT, antialias=aa, device="cpu")
        for name, aa in SETTINGS.items()
    }


# ------------------------------------------------------------------------------------------ preprocessing
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_preprocessing_matches_official_transform(setting):
    for name, spec in GOLDEN["images"].items():
        rec = GOLDEN["preprocess"][setting][name]
        w, h = spec["size_wh"]
        (new_h, new_w), pad = resize_max_geometry(w, h)
        assert [new_h, new_w] == rec["resized_hw"] and list(pad) == rec["pad_ltrb"], name
        with Image.open(DATA / spec["path"]) as im:
            x = preprocess_image(im, antialias=SETTINGS[setting])
        assert x.dtype == torch.float32 and list(x.shape) == rec["shape"] == [3, 224, 224]
        a = x.double().numpy()
        weights = np.cos(
            0.37 * np.arange(224)[None, None, :]
            + 0.11 * np.arange(224)[None, :, None]
            + 1.3 * np.arange(3)[:, None, None]
            + 0.05
        )
        for key, value in (
            ("mean", a.mean()),
            ("mean_abs", np.abs(a).mean()),
            ("mean_sq", (a * a).mean()),
            ("mean_cos_weighted", (a * weights).mean()),
        ):
            assert abs(value - rec[key]) <= TOL, (name, key, value, rec[key])
        row = x[[0, 2], rec["row_index"]].numpy()
        assert np.abs(row - _f32(rec["row_channels_0_2"])).max() <= TOL, name
        top, left = rec["corner_yx"]
        corner = x[:, top : top + 6, left : left + 6].numpy()
        assert np.abs(corner - _f32(rec["corner_6x6"])).max() <= TOL, name


def test_preprocessing_details():
    # Python's round() (half to even): 101 * 0.5 = 50.5 -> 50, as hpsv2's ResizeMaxSize computes it.
    assert resize_max_geometry(448, 101) == ((50, 224), (0, 87, 0, 87))
    assert resize_max_geometry(150, 260)[1] == (47, 0, 48, 0)  # odd padding: the extra column on the right
    # Longest side already 224 but not square: hpsv2 would leave it unpadded (and fail to batch); we pad.
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (150, 224, 3), dtype=np.uint8)
    x = preprocess_image(arr)
    mean = torch.tensor(hps.OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(hps.OPENAI_CLIP_STD).view(3, 1, 1)
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[:, :37], ((0 - mean) / std).expand(3, 37, 224))  # zero padding, then normalised
    assert torch.allclose(x[:, 37:187], (torch.from_numpy(arr).permute(2, 0, 1).float() / 255 - mean) / std)
    # RGBA and paths are accepted (converted to RGB); antialiasing changes a downscaled image.
    rgba = Image.fromarray(rng.integers(0, 256, (300, 200, 4), dtype=np.uint8), mode="RGBA")
    assert not torch.equal(preprocess_image(rgba), preprocess_image(rgba, antialias=False))
    assert torch.equal(preprocess_image(rgba), preprocess_image(rgba.convert("RGB")))
    path = next(iter(GOLDEN["images"].values()))["path"]
    with Image.open(DATA / path) as im:
        assert torch.equal(preprocess_image(DATA / path), preprocess_image(im))
    with pytest.raises(ValueError, match="too thin"):
        preprocess_image(np.zeros((1, 1000, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_features_and_scores_match_official(scorers, setting):
    scorer = scorers[setting]
    images = _images()
    image_features = scorer.image_features(images)
    expected = _f32([GOLDEN["image_features"][setting][n] for n in GOLDEN["images"]])
    assert np.abs(image_features - expected).max() <= TOL
    text_features = scorer.text_features(GOLDEN["prompts"])
    assert np.abs(text_features - _f32(GOLDEN["text_features"])).max() <= TOL
    cosines = image_features.astype(np.float64) @ text_features.T.astype(np.float64)
    assert np.abs(cosines - _f32(GOLDEN["scores"][setting])).max() <= TOL
    # score(): one prompt per image, raw cosine (the benchmark reports 100 x).
    n_prompts = len(GOLDEN["prompts"])
    pairs = [GOLDEN["prompts"][i % n_prompts] for i in range(len(images))]
    scores = scorer.score(pairs, images)
    expected_scores = [GOLDEN["scores"][setting][i][i % n_prompts] for i in range(len(images))]
    assert scores.dtype == np.float64 and np.abs(scores - _f32(expected_scores)).max() <= TOL


def test_prompt_token_ids_match_official(scorers):
    ids = scorers["antialias"].tokenize(GOLDEN["prompts"])
    for row, expected in zip(ids.tolist(), GOLDEN["prompt_ids_tiny"], strict=True):
        assert row[: len(expected)] == expected


def _text_case_ids(scorer, raw: str) -> list[int]:
    row = scorer.tokenize([raw])[0].tolist()
    return row[: row.index(scorer.tokenizer.eos_token_id) + 1]


def test_text_cleaning_and_truncation_match_official(scorers):
    scorer = scorers["antialias"]
    checked = 0
    for case in GOLDEN["text_cases"]:
        if not (HAS_FTFY or case["cleaned_without_ftfy_equal"]):
            continue  # needs ftfy.fix_text: covered by the test below where ftfy is installed
        checked += 1
        assert clean_text(case["raw"]) == case["cleaned"], case["raw"]
        assert _text_case_ids(scorer, case["raw"]) == case["ids_tiny"], case["raw"]
        features = scorer.text_features([case["raw"]])[0]
        assert np.abs(features - _f32(case["text_features"])).max() <= TOL, case["raw"]
    assert checked >= 9
    long_case = max(GOLDEN["text_cases"], key=lambda c: len(c["ids_tiny"]))
    assert len(long_case["ids_tiny"]) == 77  # truncated to 77 keeping the end token
    assert long_case["ids_tiny"][-1] == scorer.tokenizer.eos_token_id


def test_text_cleaning_cases_that_need_ftfy(scorers):
    pytest.importorskip("ftfy")
    scorer = scorers["antialias"]
    cases = [c for c in GOLDEN["text_cases"] if not c["cleaned_without_ftfy_equal"]]
    assert cases
    for case in cases:
        assert clean_text(case["raw"]) == case["cleaned"], case["raw"]
        assert _text_case_ids(scorer, case["raw"]) == case["ids_tiny"], case["raw"]


def test_text_cleaning_without_ftfy(monkeypatch):
    monkeypatch.setattr(hps, "has_ftfy", lambda: False)
    assert clean_text("  Tom &amp;amp; JERRY\t\n on\u00a0the  beach ") == "tom & jerry on the beach"
    assert clean_text("\u039f\u0394\u039f\u03a3") == "\u03bf\u03b4\u03bf\u03c2"  # final sigma, as str.lower()
    assert clean_text("a\x1cb") == "a\x1cb"  # OpenCLIP's ``regex`` \s does not match U+001C (``re``'s does)
    assert hps.text_cleaning_label() == "openclip-without-ftfy"
    with pytest.warns(UserWarning, match="ftfy is not installed"):
        HPSv2Scorer(checkpoint=CHECKPOINT, device="cpu")


def test_batching_and_order_invariance(scorers):
    images = _images()
    prompts = [GOLDEN["prompts"][i % 2] for i in range(len(images))]
    reference = scorers["antialias"].score(prompts, images)
    for batch_size in (1, 3):
        other = _quiet_scorer(checkpoint=CHECKPOINT, device="cpu", batch_size=batch_size)
        assert np.abs(other.score(prompts, images) - reference).max() <= 1e-6
    order = [3, 0, 6, 2, 5, 1, 4]
    shuffled = scorers["antialias"].score([prompts[i] for i in order], [images[i] for i in order])
    assert np.abs(shuffled - reference[order]).max() <= 1e-6
    # Padding to the longest prompt of a batch does not move a prompt's features (causal, end-token pooled).
    alone = scorers["antialias"].text_features([GOLDEN["prompts"][0]])
    with_long = scorers["antialias"].text_features([GOLDEN["prompts"][0], GOLDEN["text_cases"][-1]["raw"]])
    assert np.abs(alone[0] - with_long[0]).max() <= 1e-6


def test_score_arguments(scorers):
    scorer = scorers["antialias"]
    assert scorer.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="one prompt per image"):
        scorer.score(["a", "b"], _images()[:1])
    info = scorer.info
    assert info["version"] == "v2.1" and info["antialias"] is True and info["precision"] == "fp32"
    assert scorers["no_antialias"].info["antialias"] is False
    assert scorer.image_size == 224 and scorer.context_length == 77


# ------------------------------------------------------------------------------------------ loading
def test_tiny_writer_round_trip(tmp_path):
    path = write_tiny_hpsv2_checkpoint(tmp_path / "tiny")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "model_cfg"}
    sd = raw["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd.values())
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in sd and "text_projection" in sd
    scorer = _quiet_scorer(checkpoint=path, device="cpu", batch_size=2)
    assert Path(scorer.tokenizer_source) == tmp_path / "tiny" / "tokenizer"
    assert scorer.model.config.vision_config.hidden_size == 32
    assert scorer.model.config.text_config.hidden_size == 24
    assert scorer.model.config.vision_config.hidden_act == "gelu"
    scores = scorer.score(["a photo of a cat"] * 2, _images()[:2])
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0 + 1e-6)
    # The same tensors without the head counts cannot be converted (shapes do not tell them).
    torch.save({"state_dict": sd}, tmp_path / "no_cfg.pt")
    with pytest.raises(ModelLoadError, match="model_cfg") as err:
        HPSv2Scorer(checkpoint=tmp_path / "no_cfg.pt", tokenizer=tmp_path / "tiny" / "tokenizer")
    assert "\n" not in str(err.value)


def test_conversion_details(tmp_path):
    sd, cfg = load_openclip_state_dict(CHECKPOINT)
    model = hps.openclip_to_hf_clip(sd, cfg)
    q, k, v = sd["visual.transformer.resblocks.0.attn.in_proj_weight"].float().chunk(3)
    layer = model.vision_model.encoder.layers[0].self_attn
    assert torch.equal(layer.q_proj.weight, q) and torch.equal(layer.k_proj.weight, k)
    assert torch.equal(layer.v_proj.weight, v)
    assert torch.equal(model.visual_projection.weight, sd["visual.proj"].float().T)
    assert torch.equal(model.text_projection.weight, sd["text_projection"].float().T)
    assert torch.equal(model.text_model.embeddings.position_ids, torch.arange(77)[None])
    assert (
        model.config.vision_config.num_attention_heads == 3
        and model.config.text_config.num_attention_heads == 2
    )
    assert model.config.text_config.layer_norm_eps == 1e-5 and model.config.text_config.hidden_act == "gelu"
    sd_bad = dict(sd, **{"visual.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected OpenCLIP keys: visual.extra.weight"):
        hps.openclip_to_hf_clip(sd_bad, cfg)
    # A DDP "module." prefix is stripped at load.
    torch.save(
        {"state_dict": {f"module.{k}": t for k, t in sd.items()}, "model_cfg": cfg}, tmp_path / "ddp.pt"
    )
    loaded, _ = load_openclip_state_dict(tmp_path / "ddp.pt")
    assert set(loaded) == set(sd)
    # The ViT-H-14 config the real checkpoints get (head counts are not in the state dict).
    assert hps.VIT_H_14_CFG["vision_cfg"]["width"] // hps.VIT_H_14_CFG["vision_cfg"]["head_width"] == 16


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"],
    ids=["empty", "garbage", "truncated-zip"],
)
def test_corrupt_checkpoint_is_one_line_error(tmp_path, content):
    path = tmp_path / "HPS_v2.1_compressed.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="cannot load HPS v2.1 checkpoint") as err:
        HPSv2Scorer(checkpoint=path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_and_wrong_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file") as err:
        HPSv2Scorer("v2.0", checkpoint=tmp_path / "missing.pt")
    assert "\n" not in str(err.value) and "HPS v2.0" in str(err.value)
    torch.save({"state_dict": {"foo": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="not an OpenCLIP CLIP state dict") as err:
        HPSv2Scorer(checkpoint=tmp_path / "other.pt")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown HPS version"):
        HPSv2Scorer("v3")


def test_hub_download_names_and_errors(tmp_path, monkeypatch):
    calls = []

    def fake_downloader(repo_id, filename):
        calls.append((repo_id, filename))
        return CHECKPOINT

    tok = DATA / GOLDEN["tokenizer"]["path"]
    for version, filename in (("v2.0", "HPS_v2_compressed.pt"), ("2.1", "HPS_v2.1_compressed.pt")):
        scorer = _quiet_scorer(version=version, downloader=fake_downloader, tokenizer=tok, device="cpu")
        assert calls[-1] == ("xswu/HPSv2", filename)
        assert scorer.checkpoint == f"xswu/HPSv2/{filename}"

    def offline(repo_id, filename):
        raise OSError(f"We couldn't connect to the Hub to fetch {filename}.\nCheck your connection.")

    with pytest.raises(ModelLoadError, match="cannot download HPS v2.1 checkpoint 'xswu/HPSv2/") as err:
        HPSv2Scorer(downloader=offline)
    assert "\n" not in str(err.value)
    # Default downloader, offline with an empty cache: a one-line error, no hang. (huggingface_hub reads
    # HF_HUB_OFFLINE when first imported, which may precede the test environment: set its constant too.)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as err:
        HPSv2Scorer("v2.0")
    assert "\n" not in str(err.value) and "HPS_v2_compressed.pt" in str(err.value)
