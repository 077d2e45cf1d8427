"""Make the HPS v2 golden numbers with the real open_clip and the official ``hpsv2`` code (run once, by hand).

This script is NOT run by the tests and does NOT run in the project venv: it needs torchvision, open_clip and
the ``hpsv2`` package, which the project keeps out of its dependencies. Run it in a throwaway venv::

    python3 -m venv /tmp/hpsgold/venv
    /tmp/hpsgold/venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/hpsgold/venv/bin/pip install open_clip_torch==3.3.0 ftfy requests clint
    /tmp/hpsgold/venv/bin/pip install --no-deps hpsv2==1.2.0
    /tmp/hpsgold/venv/bin/python tests/data/hpsv2/make_golden.py

(The ``hpsv2`` 1.2.0 wheel does not ship ``bpe_simple_vocab_16e6.txt.gz``, so its tokenizer cannot even be
imported; the script copies the file from the open_clip wheel into the throwaway venv's ``hpsv2`` folder.)

What it does:

1. Writes a tiny CLIP byte-level BPE vocabulary (``tiny/tokenizer/vocab.json`` + ``merges.txt``, the layout of
   ``transformers.CLIPTokenizer``) and the same merges as the gzipped file ``SimpleTokenizer`` reads.
2. Registers a tiny ViT-H-14-like config (same architecture family: pre-norm ViT with class token, exact GELU,
   LayerNorm eps 1e-5, no QuickGELU, causal text transformer pooled at the end token; smaller widths, two
   vision and three text layers, different vision/text widths and head counts) in
   ``open_clip.factory._MODEL_CONFIGS`` and in the ``hpsv2`` package's vendored copy, builds it with open_clip,
   perturbs every parameter with seeded noise (so that no LayerNorm is the identity and no bias is zero) and
   saves ``{"state_dict": <float16 tensors>, "model_cfg": <the config>}`` as ``tiny/HPS_tiny.pt``: the
   state dict the way the HPS checkpoints store it, plus the config, since attention head counts cannot be
   read from tensor shapes (the real checkpoints are ViT-H-14, whose head counts the converter knows).
3. Loads that checkpoint exactly as ``hpsv2.img_score.score`` does (``create_model_and_transforms(...,
   precision='amp', light_augmentation=True, output_dict=True)`` of the vendored open_clip, then
   ``load_state_dict(checkpoint['state_dict'])``), so the weights are the float16 values in a float32 model.
4. Writes a few images of different sizes and aspect ratios (``images/*.png``, generated deterministically)
   and runs the official ``preprocess_val`` on them (``Image.open`` -> RGB -> ``ToTensor`` -> ``ResizeMaxSize``
   (longest side 224, bicubic, zero padding) -> normalise). It does this twice: with torchvision's current
   default (antialias=True) and with ``antialias=False`` (what torchvision < 0.17 did for tensors), by
   patching ``torchvision.transforms.functional.resize`` for the second run.
5. Records per image and setting: the resized size, padding, means / mean-abs / mean-square / a fixed
   cosine-weighted mean of the preprocessed tensor, and exact slices (the middle row of every channel and
   an 8x8 corner of the image content); the L2-normalised image features; text features of the prompts and of
   the text-cleaning cases; the cosine matrix (the HPS score before x100); and, for the text-cleaning cases,
   the official cleaned string and token ids with the tiny vocabulary and with the real CLIP vocabulary.
6. Cross-checks the hpsv2 model against the current open_clip (3.3.0) model on the same inputs.

Outputs (next to this script): ``golden.json``, ``tiny/HPS_tiny.pt``, ``tiny/tokenizer/``, ``images/``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib.metadata as md
import importlib.util
import json
import math
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny"
IMAGES = HERE / "images"
MODEL_NAME = "HPS-tiny"
SEED = 1234

# Words that get multi-level merges in the tiny vocabulary (everything else falls back to byte tokens).
WORDS = (
    "a",
    "the",
    "of",
    "and",
    "photo",
    "cat",
    "dog",
    "dogs",
    "painting",
    "red",
    "car",
    "art",
    "in",
    "snow",
)

PROMPTS = [
    "a photo of a cat",
    "A painting of two dogs playing in the snow, trending on artstation",
    "concept art of a red car",
    "the art of the red cat and the dog",
]

TEXT_CASES = [
    "A photo of a cat",
    "  Two   DOGS\tplaying\n in the  snow  ",
    "Tom &amp; Jerry &amp;amp; friends",
    "\u201cCurly quotes\u201d and \u2018single\u2019 ones",
    "caf\u00c3\u00a9 au lait",
    "cafe\u0301 in NFD form",
    "\ufb01sh and \ufb02owers",
    "\uff26\uff35\uff2c\uff2c width \uff21\uff22\uff23",
    "\u039f\u0394\u039f\u03a3 street",
    "it's 2024, isn't it? 100% \U0001f600",
    "&lt;b&gt;bold&lt;/b&gt; text",
    "non\u00a0breaking\u2003spaces",
    "\u0130stanbul at night",
    "",
    " ".join(["a red photo of the painting"] * 20),
]

# name -> (width, height, PIL mode)
IMAGE_SPECS = {
    "landscape_320x200": (320, 200, "RGB"),
    "portrait_150x260": (150, 260, "RGB"),
    "small_60x45": (60, 45, "RGB"),
    "square_224": (224, 224, "RGB"),
    "tall_97x225": (97, 225, "RGB"),
    "gray_180x140": (180, 140, "L"),
    "halfscale_448x101": (448, 101, "RGB"),  # 101 * 0.5 = 50.5: Python's round() gives 50 (half to even)
}

TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 24, "head_width": 8, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": None, "width": 16, "heads": 2, "layers": 3},
}


# ------------------------------------------------------------------------------------------ tokenizer files
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    bs += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def tiny_merges() -> list[tuple[str, str]]:
    base = list(bytes_to_unicode().values())
    known = set(base) | {c + "</w>" for c in base}
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        # Merge pairs left to right, then the rest: "p h o t o</w>" -> "ph o t o</w>" -> "pho t o</w>" ...
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = pair[0] + pair[1]
            if pair not in merges and merged not in known:
                merges.append(pair)
                known.add(merged)
            parts = [merged] + parts[2:]
    return merges


def write_tokenizer(folder: Path, gz_path: Path) -> int:
    merges = tiny_merges()
    base = list(bytes_to_unicode().values())
    vocab_tokens = base + [c + "</w>" for c in base] + ["".join(m) for m in merges]
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab_tokens)) == len(vocab_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(vocab_tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # SimpleTokenizer splits on "\n" and keeps lines[1:]: no trailing newline (it would add an empty merge).
    with gzip.open(gz_path, "wb") as f:
        f.write("\n".join(lines).encode("utf-8"))
    return len(vocab_tokens)


# ------------------------------------------------------------------------------------------ images
def make_image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    """Smooth gradients, sharp stripes and a checkerboard (so antialiasing matters), plus a little noise."""
    rng = np.random.RandomState(seed)  # legacy generator: stream fixed across numpy versions
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(2 * math.pi * x / max(width, 1) * 1.5 + seed)
    g = 255.0 * y / max(height - 1, 1)
    b = np.where((x // 3 + y // 3) % 2 == 0, 230.0, 25.0)
    stripes = np.where((x // 2) % 2 == 0, 60.0, -60.0) * (y > height * 0.6)
    img = np.stack([r + stripes, g, b], axis=-1)
    ph, pw = min(12, height), min(12, width)  # a small noisy patch (noise does not compress)
    img[:ph, :pw] += rng.randint(-40, 41, size=(ph, pw, 3))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img, mode="RGB")
    return pil.convert(mode) if mode != "RGB" else pil


# ------------------------------------------------------------------------------------------ records
def checksum_weights(shape) -> np.ndarray:
    c, h, w = shape
    cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return np.cos(0.37 * xx + 0.11 * yy + 1.3 * cc + 0.05)


def tensor_record(t: torch.Tensor, new_hw: tuple[int, int], pad: list[int]) -> dict:
    a = t.detach().to(torch.float64).numpy()
    left, top = pad[0], pad[1]
    mid = a.shape[1] // 2
    return {
        "shape": list(a.shape),
        "resized_hw": list(new_hw),
        "pad_ltrb": pad,
        "mean": float(a.mean()),
        "mean_abs": float(np.abs(a).mean()),
        "mean_sq": float((a * a).mean()),
        "mean_cos_weighted": float((a * checksum_weights(a.shape)).mean()),
        "row_index": mid,
        "row_channels_0_2": f32(a[[0, 2], mid, :]),
        "corner_yx": [top, left],
        "corner_6x6": f32(a[:, top : top + 6, left : left + 6]),
    }


def f32(values) -> list:
    """Nested lists of the shortest decimal strings that round-trip the float32 values (compact JSON)."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim == 0:
        return float(str(arr[()]))
    return [f32(v) for v in arr]


def until_end(row, end_id: int) -> list[int]:
    """Token ids up to and including the first end token (the zero padding after it dropped; id 0 is "!")."""
    ids = [int(i) for i in row]
    return ids[: ids.index(end_id) + 1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    import ftfy
    import open_clip
    import torchvision.transforms.functional as tvf

    # hpsv2 1.2.0 ships without the BPE file its tokenizer module loads at import time.
    import_spec = importlib.util.find_spec("hpsv2")
    hps_dir = Path(import_spec.origin).parent / "src" / "open_clip"
    if not (hps_dir / "bpe_simple_vocab_16e6.txt.gz").exists():
        shutil.copy(Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz", hps_dir)

    import hpsv2.src.open_clip as hoc
    import hpsv2.src.open_clip.factory as hoc_factory
    import hpsv2.src.open_clip.tokenizer as hoc_tok

    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="hpsgold-"))

    # 1. tokenizer
    if TINY.exists():
        shutil.rmtree(TINY)
    gz = scratch / "tiny_bpe.txt.gz"
    vocab_size = write_tokenizer(TINY / "tokenizer", gz)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["text_cfg"]["vocab_size"] = vocab_size
    open_clip.factory._MODEL_CONFIGS[MODEL_NAME] = config
    hoc_factory._MODEL_CONFIGS[MODEL_NAME] = config

    real_tokenizer = hoc_tok._tokenizer
    tiny_tokenizer = hoc_tok.SimpleTokenizer(bpe_path=str(gz))
    assert tiny_tokenizer.vocab_size == vocab_size

    # 2. model -> float16 checkpoint
    torch.manual_seed(SEED)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            scale = max(float(p.float().std()), 0.02) if p.numel() > 1 else 0.02
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    ckpt = TINY / "HPS_tiny.pt"
    # "model_cfg" is ignored by hpsv2 (it reads checkpoint["state_dict"]); the converter reads the head counts.
    torch.save({"state_dict": state, "model_cfg": config}, ckpt)

    # 3. the official loading path
    model_h, _, preprocess_val = hoc.create_model_and_transforms(
        MODEL_NAME,
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )
    checkpoint = torch.load(ckpt, map_location="cpu")
    model_h.load_state_dict(checkpoint["state_dict"])
    model_h.eval()
    assert next(model_h.parameters()).dtype == torch.float32

    # The current open_clip on the same checkpoint, for the cross-check.
    model_oc = open_clip.create_model(MODEL_NAME, pretrained=None)
    model_oc.load_state_dict(checkpoint["state_dict"])
    model_oc.eval()

    hoc_tok._tokenizer = tiny_tokenizer
    tokenize = hoc.get_tokenizer(MODEL_NAME)  # the official ``tokenize`` function

    # 4. images
    if IMAGES.exists():
        shutil.rmtree(IMAGES)
    IMAGES.mkdir(parents=True)
    for i, (name, (w, h, mode)) in enumerate(IMAGE_SPECS.items()):
        make_image(w, h, mode, seed=i).save(IMAGES / f"{name}.png", optimize=True)

    def resize_max_geometry(width: int, height: int) -> tuple[tuple[int, int], list[int]]:
        scale = 224 / float(max(height, width))
        if scale == 1.0:
            return (height, width), [0, 0, 0, 0]
        nh, nw = (round(d * scale) for d in (height, width))
        ph, pw = 224 - nh, 224 - nw
        return (nh, nw), [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2]

    original_resize = tvf.resize
    max_diff_oc = 0.0
    preprocess: dict[str, dict] = {}
    image_features: dict[str, dict] = {}
    scores: dict[str, list] = {}
    with torch.no_grad():
        prompt_tokens = tokenize(PROMPTS)
        prompt_features = model_h.encode_text(prompt_tokens, normalize=True)
        max_diff_oc = max(
            max_diff_oc,
            float((prompt_features - model_oc.encode_text(prompt_tokens, normalize=True)).abs().max()),
        )
        for setting, antialias in (("antialias", True), ("no_antialias", False)):

            def patched(
                img, size, interpolation=tvf.InterpolationMode.BILINEAR, max_size=None, antialias=antialias
            ):
                return original_resize(img, size, interpolation, max_size=max_size, antialias=antialias)

            tvf.resize = patched  # ResizeMaxSize looks up F.resize at call time
            try:
                tensors = []
                preprocess[setting] = {}
                for name, (w, h, _mode) in IMAGE_SPECS.items():
                    with Image.open(IMAGES / f"{name}.png") as im:
                        x = preprocess_val(im)
                    assert x.shape == (3, 224, 224), (name, x.shape)
                    new_hw, pad = resize_max_geometry(w, h)
                    preprocess[setting][name] = tensor_record(x, new_hw, pad)
                    tensors.append(x)
            finally:
                tvf.resize = original_resize
            batch = torch.stack(tensors)
            out = model_h(batch, prompt_tokens[:1].expand(len(tensors), -1))
            feats = out["image_features"]
            assert torch.allclose(feats, model_h.encode_image(batch, normalize=True), atol=1e-6)
            max_diff_oc = max(
                max_diff_oc, float((feats - model_oc.encode_image(batch, normalize=True)).abs().max())
            )
            image_features[setting] = {n: f32(f) for n, f in zip(IMAGE_SPECS, feats, strict=True)}
            # hpsv2: logits_per_image = image_features @ text_features.T; the score is its diagonal.
            scores[setting] = f32(feats @ prompt_features.T)

        # 5. text cleaning cases
        text_cases = []
        for raw in TEXT_CASES:
            cleaned = hoc_tok.whitespace_clean(hoc_tok.basic_clean(raw)).lower()
            no_ftfy = hoc_tok.whitespace_clean(html.unescape(html.unescape(raw)).strip()).lower()
            ids_tiny = tokenize([raw])
            hoc_tok._tokenizer = real_tokenizer
            ids_real = hoc_tok.tokenize([raw])
            hoc_tok._tokenizer = tiny_tokenizer
            feats = model_h.encode_text(ids_tiny, normalize=True)
            max_diff_oc = max(
                max_diff_oc, float((feats - model_oc.encode_text(ids_tiny, normalize=True)).abs().max())
            )
            text_cases.append(
                {
                    "raw": raw,
                    "cleaned": cleaned,
                    "ftfy_changes_it": ftfy.fix_text(raw) != raw,
                    "cleaned_without_ftfy_equal": no_ftfy == cleaned,
                    "ids_tiny": until_end(ids_tiny[0], vocab_size - 1),
                    "ids_real": until_end(ids_real[0], 49407),
                    "text_features": f32(feats[0]),
                }
            )

    golden = {
        "about": "Made by tests/data/hpsv2/make_golden.py with the official hpsv2 code path; see its docstring.",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": version("torchvision"),
            "open_clip_torch": version("open_clip_torch"),
            "hpsv2": version("hpsv2"),
            "ftfy": version("ftfy"),
            "numpy": np.__version__,
            "pillow": version("pillow"),
            "regex": version("regex"),
        },
        "model_name": MODEL_NAME,
        "open_clip_config": config,
        "seed": SEED,
        "checkpoint": {"path": "tiny/HPS_tiny.pt", "sha256": sha256(ckpt), "dtype": "float16"},
        "tokenizer": {"path": "tiny/tokenizer", "vocab_size": vocab_size},
        "images": {
            name: {
                "path": f"images/{name}.png",
                "size_wh": [w, h],
                "mode": mode,
                "sha256": sha256(IMAGES / f"{name}.png"),
            }
            for name, (w, h, mode) in IMAGE_SPECS.items()
        },
        "checksum_weights": "cos(0.37*x + 0.11*y + 1.3*c + 0.05) over the (c, y, x) grid, float64",
        "preprocess": preprocess,
        "prompts": PROMPTS,
        "prompt_ids_tiny": [until_end(row, vocab_size - 1) for row in prompt_tokens],
        "text_features": f32(prompt_features),
        "image_features": image_features,
        "scores": scores,
        "scores_layout": "scores[setting][image_index][prompt_index] = cosine (HPS = 100 x this); images in the order of 'images'",
        "text_cases": text_cases,
        "cross_check": {"max_abs_diff_hpsv2_vs_open_clip": max_diff_oc},
    }
    (HERE / "golden.json").write_text(
        json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    shutil.rmtree(scratch, ignore_errors=True)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(
        f"wrote {HERE / 'golden.json'}; hpsv2 vs open_clip {version('open_clip_torch')}: max |diff| {max_diff_oc:.3g}"
    )
    print(f"folder size {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
