"""Reward-training benchmark: ``train_reward``'s step loop against a bare forward+backward+step loop.

What is measured: pairs per second of ``visionprefer.reward.train_reward`` (its optimizer steps as recorded
in ``metrics.jsonl``: batch preparation from the dataset, i.e. PNG decoding, tokenising and the image
processor, then forward, backward, clipping, AdamW and the schedule) and of a bare loop on the same model,
the same pairs in the same order, already turned into tensors before the clock starts (forward through the
same pair scorer, the pairwise loss, backward, AdamW step). The model is a random-weight CLIP saved with
``save_pretrained`` (4+4 layers of width 192, 112 px images, 77-token prompts), larger than the test model
so that the model, not Python, dominates. Both arms run in this process, alternate, and keep their best
time; the machine is shared, so only the ratio means something. The trainer's checkpointing and the final
save are outside both numbers and are printed on their own line.

Run: ``.venv/bin/python benchmarks/bench_train_reward.py [--steps 20 --batch-size 16 --repeats 2 --threads 2]``.
The last line is train ÷ bare throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    text = dict(vocab_size=len(tok), hidden_size=192, intermediate_size=768, num_hidden_layers=4,
                num_attention_heads=6, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=6,
                  image_size=112, patch_size=16)  # fmt: skip
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=128))
    size = {"shortest_edge": 112}
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size=size, crop_size={"height": 112, "width": 112}), tokenizer=tok
    )
    out = folder / "bench-clip"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def bare_loop(model_path: Path, batches: list[dict], lr: float) -> float:
    """Seconds for forward+backward+AdamW over ``batches`` (tensors made beforehand)."""
    import torch
    from transformers import AutoModel

    from visionprefer.reward.model import make_pair_scorer, pair_loss

    scorer = make_pair_scorer(AutoModel.from_pretrained(model_path))
    scorer.train()
    opt = torch.optim.AdamW(scorer.parameters(), lr=lr)
    # The trainer scores the validation pairs before its first step, which warms the forward pass (kernels,
    # allocator); do the same untimed here, or the bare arm pays a cold start the trainer does not.
    with torch.no_grad():
        first = batches[0]
        scorer(first["input_ids"], first["attention_mask"], first["pixel_values"])
    start = time.perf_counter()
    for b in batches:
        loss = pair_loss(scorer(b["input_ids"], b["attention_mask"], b["pixel_values"]), b["labels"]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    os.environ.update(HF_HUB_OFFLINE="1", HF_HOME=str(work / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    os.environ.pop("WORLD_SIZE", None)

    import datasets
    import torch
    from transformers import AutoModel, AutoProcessor

    from visionprefer.reward import reward_config_from_dict, train_reward
    from visionprefer.reward.data import GlobalOrder, load_pairs
    from visionprefer.reward.model import BatchMaker
    from visionprefer.reward.synthetic import synthetic_rows, write_pairs_dataset

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    try:
        n = args.steps * args.batch_size
        ds_dir = write_pairs_dataset(work / "ds", {"train": synthetic_rows(n, seed=0, size=128)})
        model_path = build_model(work)
        lr = 1e-4
        # The bare arm's batches: the trainer's pairs of each step, as tensors, made before the clock starts.
        data = load_pairs(str(ds_dir), aspect="overall", train_split="train", validation_split="validation",
                          validation_share=0.0)  # fmt: skip
        make = BatchMaker(
            AutoProcessor.from_pretrained(model_path), None, AutoModel.from_pretrained(model_path).config
        )
        order = GlobalOrder(len(data.train), args.batch_size, 0)
        batches = [make(data.train[order.step(s)]) for s in range(args.steps)]
        times: dict[str, list[float]] = {"bare": [], "train": []}
        overhead = []
        for r in range(args.repeats):
            times["bare"].append(bare_loop(model_path, batches, lr))
            out = work / f"out-{r}"
            cfg = reward_config_from_dict(
                dict(
                    dataset=str(ds_dir),
                    base_model=str(model_path),
                    output_dir=str(out),
                    max_steps=args.steps,
                    batch_size=args.batch_size,
                    learning_rate=lr,
                    validation_share=0.0,
                    max_grad_norm=None,
                    save_every=args.steps,
                    seed=0,
                )  # fmt: skip
            )
            start = time.perf_counter()
            train_reward(cfg, progress=False)
            wall = time.perf_counter() - start
            steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            loop = sum(s["seconds"] for s in steps if "seconds" in s)
            times["train"].append(loop)
            overhead.append(wall - loop)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"setup: CLIP (4+4 layers, width 192, 112 px) random weights, {args.steps} steps x {args.batch_size} "
        f"pairs, torch threads {args.threads}, best of {args.repeats}"
    )
    best = {k: min(v) for k, v in times.items()}
    pairs = args.steps * args.batch_size
    for k, t in best.items():
        print(f"{k:>6}: {t:.2f} s = {pairs / t:.1f} pairs/s")
    print(
        f"trainer outside the step loop (loading, checks, final checkpoint and save): {min(overhead):.2f} s"
    )
    print(f"train/bare throughput: {best['bare'] / best['train']:.2f}")


if __name__ == "__main__":
    main()
