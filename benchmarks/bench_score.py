"""Scoring benchmark: a batched scorer against a one-image-at-a-time loop on the same model.

What is measured: CLIP score (``visionprefer.scorers.CLIPScorer``, the class every CLIP-based scorer of the
package builds on) over the same images and prompts, once with the scorer's batching (``--batch-size``) and
once calling it image by image, as the official HPS v2 script does. The model is a random-weight CLIP saved
with ``save_pretrained`` and loaded back, larger than the test model so that the forward pass dominates
(ViT with 6 layers of width 256 on 224 px images; a 6-layer text tower). Both arms load the model once, run
the same inputs in the same process, alternate, and keep their best time; the machine is shared, so only
the ratio means something.

Run: ``.venv/bin/python benchmarks/bench_score.py [--images 96 --batch-size 32 --repeats 3 --threads 2]``.
The last line is batched ÷ one-at-a-time throughput.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def build_model(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from visionprefer.models.tiny import write_clip_tokenizer_files

    vocab, merges = write_clip_tokenizer_files(folder / "_tok")
    tok = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=8,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=8,
        image_size=224,
        patch_size=16,
    )
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=256))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
        ),
        tokenizer=tok,
    )
    out = folder / "bench-clip"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from PIL import Image

    from visionprefer.scorers import CLIPScorer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp))
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(args.images)
        ]
        prompts = [f"a photo of object number {i} on a wooden table" for i in range(args.images)]
        batched = CLIPScorer(str(path), device="cpu", batch_size=args.batch_size)
        single = CLIPScorer(str(path), device="cpu", batch_size=1)
        single.score(prompts[:2], images[:2])  # warm-up both
        batched.score(prompts[:2], images[:2])
        times = {"one-at-a-time": [], "batched": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            loop = np.concatenate([single.score([pr], [im]) for pr, im in zip(prompts, images, strict=True)])
            times["one-at-a-time"].append(time.perf_counter() - start)
            start = time.perf_counter()
            batch = batched.score(prompts, images)
            times["batched"].append(time.perf_counter() - start)
        assert np.allclose(loop, batch, atol=1e-3), "batched and looped scores must agree"
    print(
        f"setup: CLIP (6+6 layers, width 256, 224 px) random weights, {args.images} images, "
        f"batch size {args.batch_size}, torch threads {args.threads}, best of {args.repeats}"
    )
    best = {k: min(v) for k, v in times.items()}
    for k, t in best.items():
        print(f"{k:>14}: {t:.2f} s = {args.images / t:.1f} images/s")
    print(f"check: looped and batched scores agree within 1e-3 (max diff {np.abs(loop - batch).max():.2e})")
    print(f"batched/one-at-a-time throughput: {best['one-at-a-time'] / best['batched']:.2f}")


if __name__ == "__main__":
    main()
