"""Every eval summary records what produced its numbers (evaluate.provenance): per scorer its version, the
sha256 of the weight files loaded, the preprocessing and the tokenizer, plus the visionprefer version; the
per-item files name images as found on disk (a ``.jpg`` where the layout says ``.png``, and back)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from PIL import Image

import visionprefer
from visionprefer.cli import main
from visionprefer.evaluate.images import generate_images
from visionprefer.models.tiny import tiny_model_path

from .conftest import REPO

TINY_HPS = REPO / "tests" / "data" / "hpsv2" / "tiny" / "HPS_tiny.pt"
TIFA_SAMPLE = REPO.parent / "shared" / "data" / "tifa" / "sample" / "sample_question_answers.json"
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _to_jpg(path: Path) -> Path:
    """Re-save an image as JPEG beside it (same stem) and remove the original."""
    target = path.with_suffix(".jpg") if path.suffix != ".jpg" else path.with_suffix(".png")
    with Image.open(path) as im:
        im.convert("RGB").save(target)
    path.unlink()
    return target


def _check_clip(entry: dict, name: str = "clip") -> None:
    ckpt = entry["checkpoint"]
    weights = tiny_model_path("tiny-clip") / "model.safetensors"
    assert entry["scorer"] == name and entry["version"] == "v1"
    assert ckpt["id"] == "tiny-clip" and ckpt["sha256"] == _sha256(weights)
    assert ckpt["files"] == [
        {"name": "model.safetensors", "bytes": weights.stat().st_size, "sha256": _sha256(weights)}
    ]
    pre = entry["preprocessing"]
    assert pre["size"] == {"shortest_edge": 32} and pre["crop_size"] == {"height": 32, "width": 32}
    assert pre["resample"] == "BICUBIC" and pre["normalize"] == "openai-clip" and pre["mean"] == OPENAI_MEAN
    assert entry["tokenizer"]["class"] == "CLIPTokenizer" and entry["tokenizer"]["context_length"] == 77


def _check_hpsv2(entry: dict) -> None:
    assert entry["scorer"] == "hpsv2" and entry["version"] == "v2.1"
    assert entry["checkpoint"]["path"] == str(TINY_HPS)
    assert entry["checkpoint"]["sha256"] == _sha256(TINY_HPS)
    pre = entry["preprocessing"]
    assert pre["transform"] == "resize-longest-side-then-zero-pad" and pre["size"] == 224
    assert pre["resample"] == "bicubic" and pre["antialias"] is True
    assert pre["normalize"] == "openai-clip" and pre["mean"] == OPENAI_MEAN
    assert entry["tokenizer"] == {
        "name": str(TINY_HPS.parent / "tokenizer"),
        "class": "CLIPTokenizer",
        "context_length": 77,
    }


def test_score_summary_provenance_and_image_names(tmp_path):
    (tmp_path / "p.txt").write_text("a photo of a cat\ntwo dogs in the snow\na red car\n")
    images = tmp_path / "images"
    generate_images("tiny-sd15", [(f"{i:05d}.png", "x") for i in range(3)], images, progress=False)
    _to_jpg(images / "00001.png")
    args = ["--prompts", str(tmp_path / "p.txt"), "--images", str(images), "--out", str(tmp_path / "o")]
    args += ["--metrics", "clip,aesthetic,hpsv2", "--clip-model", "tiny-clip"]
    args += ["--aesthetic-model", "tiny-aesthetic", "--hpsv2-checkpoint", str(TINY_HPS), "-q"]
    assert main(["eval", "score", *args]) == 0
    summary = json.loads((tmp_path / "o" / "score_summary.json").read_text())
    prov = summary["provenance"]
    assert prov["visionprefer"] == visionprefer.__version__
    _check_clip(prov["scorers"]["clip"])
    _check_hpsv2(prov["scorers"]["hpsv2"])
    aes = prov["scorers"]["aesthetic"]
    head = tiny_model_path("tiny-aesthetic") / "aesthetic_head.pth"
    assert aes["version"] == "v2" and aes["checkpoint"]["sha256"] == _sha256(head)
    _check_clip(aes["clip"])
    # The old keys still work: model ids as before; HPS, which had null, now has its provenance entry.
    assert summary["models"]["clip"] == "tiny-clip" and summary["models"]["aesthetic"] == "tiny-aesthetic"
    assert summary["models"]["hpsv2"]["checkpoint"]["sha256"] == _sha256(TINY_HPS)
    assert [r["image"] for r in _rows(tmp_path / "o" / "score_items.jsonl")] == [
        "00000.png",
        "00001.jpg",
        "00002.png",
    ]


def test_hpsv2_summary_provenance_and_image_names(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "anime.json").write_text(json.dumps([f"an anime cat {i}" for i in range(2)]))
    images = tmp_path / "images"
    generate_images("tiny-sd15", [(f"anime/{i:05d}.jpg", "x") for i in range(2)], images, progress=False)
    _to_jpg(images / "anime" / "00001.jpg")  # -> 00001.png
    args = ["--images", str(images), "--out", str(tmp_path / "o"), "--styles", "anime"]
    args += ["--benchmark-dir", str(bench), "--checkpoint", str(TINY_HPS), "-q"]
    assert main(["eval", "hpsv2", *args]) == 0
    summary = json.loads((tmp_path / "o" / "hpsv2_summary.json").read_text())
    assert summary["provenance"]["visionprefer"] == visionprefer.__version__
    _check_hpsv2(summary["provenance"]["scorers"]["hpsv2"])
    assert summary["complete"] is False and summary["prompts_per_style"] == {"anime": 2}
    names = [r["image"] for r in _rows(tmp_path / "o" / "hpsv2_items.jsonl")]
    assert names == ["anime/00000.jpg", "anime/00001.png"]


def test_tifa_summary_provenance_and_image_names(tmp_path):
    out = tmp_path / "a"
    common = ["--questions", str(TIFA_SAMPLE), "--vqa-model", "tiny-blip"]
    common += ["--embed-model", "tiny-text-embed", "-q"]
    assert main(["eval", "tifa", "--model", "tiny-sd15", "--out", str(out), *common]) == 0
    _to_jpg(out / "images" / "drawbench_52.png")
    assert main(["eval", "tifa", "--images", str(out / "images"), "--out", str(tmp_path / "b"), *common]) == 0
    summary = json.loads((tmp_path / "b" / "tifa_summary.json").read_text())
    prov = summary["provenance"]
    assert prov["visionprefer"] == visionprefer.__version__
    vqa = prov["scorers"]["vqa"]
    weights = tiny_model_path("tiny-blip") / "model.safetensors"
    assert vqa["scorer"] == "vqa" and vqa["checkpoint"]["id"] == "tiny-blip"
    assert vqa["checkpoint"]["sha256"] == _sha256(weights)
    assert vqa["preprocessing"]["size"] == {"height": 32, "width": 32}
    assert vqa["preprocessing"]["normalize"] == "openai-clip"
    assert vqa["tokenizer"]["class"] == "BertTokenizer" and vqa["tokenizer"]["context_length"] == 64
    sim = prov["scorers"]["similarity"]
    embed = tiny_model_path("tiny-text-embed") / "model.safetensors"
    assert sim["checkpoint"]["id"] == "tiny-text-embed" and sim["checkpoint"]["sha256"] == _sha256(embed)
    assert summary["questions"]["source"] == str(TIFA_SAMPLE) and summary["questions"]["url"] is None
    assert summary["questions"]["sha256"] == _sha256(TIFA_SAMPLE)
    names = {r["caption_id"]: r["image"] for r in _rows(tmp_path / "b" / "tifa_items.jsonl")}
    assert names == {"coco_301091": "coco_301091.png", "drawbench_52": "drawbench_52.jpg"}


def test_winrate_summary_provenance_and_image_names(tmp_path, fake_llm):
    prompts = [f"a photo of object {i}" for i in range(4)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    items = [(f"{i:05d}.png", p) for i, p in enumerate(prompts)]
    generate_images("tiny-sd15", items, tmp_path / "a", progress=False)
    generate_images("tiny-sd21", items, tmp_path / "b", progress=False)
    _to_jpg(tmp_path / "a" / "00002.png")
    base = ["eval", "winrate", "--prompts", str(tmp_path / "p.txt"), "--a", str(tmp_path / "a")]
    base += ["--b", str(tmp_path / "b"), "-q"]
    assert main([*base, "--scorer", "clip", "--scorer-model", "tiny-clip", "--out", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "winrate_summary.json").read_text())
    prov = summary["provenance"]
    assert prov["visionprefer"] == visionprefer.__version__ and prov["preferences"] == "scorer"
    assert prov["judge"] is None and list(prov["scorers"]) == ["clip"]
    _check_clip(prov["scorers"]["clip"])
    rows = _rows(tmp_path / "s" / "winrate_items.jsonl")
    assert [r["image_a"] for r in rows] == ["00000.png", "00001.png", "00002.jpg", "00003.png"]
    assert all(r["image_b"] == f"{r['index']:05d}.png" for r in rows)

    server = fake_llm(responder="pairwise")
    judged = ["--judge-model", "gpt-4o", "--base-url", server.base_url, "--out", str(tmp_path / "j")]
    assert main([*base, *judged]) == 0
    prov = json.loads((tmp_path / "j" / "winrate_summary.json").read_text())["provenance"]
    guide = REPO / "annotation_guides" / "pairwise.md"
    assert prov["preferences"] == "judge" and prov["scorers"] == {}
    assert prov["judge"]["model"] == "gpt-4o" and prov["judge"]["base_url"] == server.base_url
    assert prov["judge"]["guide"] == {"path": "annotation_guides/pairwise.md", "sha256": _sha256(guide)}


def test_weight_hashes_are_cached_by_path_size_and_mtime(tmp_path):
    from visionprefer.evaluate.provenance import file_sha256

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 3_000_000)  # more than one 1 MiB chunk
    st = f.stat()
    assert file_sha256(f) == _sha256(f)
    f.write_bytes(b"b" * 3_000_000)  # same size; same mtime restored: the cached hash is served, not re-read
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(f) == hashlib.sha256(b"a" * 3_000_000).hexdigest()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: hashed again
    assert file_sha256(f) == _sha256(f)
