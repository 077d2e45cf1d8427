"""Generation benchmark: the generate stage against the bare diffusers pipeline.

What is measured
----------------
A random-weight SD1.5-like pipeline, larger than the tiny test model (UNet block_out_channels (32, 64),
64-dim CLIP text encoder, 256x256 images, 8 DDIM steps by default), is built once with ``save_pretrained``.
One pipeline call (one batch) takes well over 1 s on a 2-core CPU; the script prints the measured time.

Two arms make the same images with the same pipeline calls:

* **bare**: ``DiffusionPipeline.from_pretrained(model_dir)``, then one ``pipe(...)`` call per chunk of the
  stage's plan (``visionprefer.generate.plan.plan_images``): same prompts in the same order, the same
  per-image CPU ``torch.Generator`` seeds, batch size, guidance scale, steps, height/width,
  ``output_type="pil"``. The images are kept in memory and nothing is written.
* **stage**: the prompts and generate stages of ``visionprefer build`` (``build.run_stage``) into a fresh
  run directory: the run directory's marker, the prompts stage, the plan, the model load, the pipeline
  calls, PNG encoding, sha256, atomic (fsynced) image writes and the fsynced ``done-rank0.jsonl`` appends.
  (Up to 2026-12 this arm ran the whole ``build``, so with no feedback configured it also published a
  dataset folder and the HTML report, about 0.5 s of a 15 s run: 3 points of the ratio that are not
  generation.)

Both arms include model loading (``from_pretrained``) in their timing; imports and a warm-up run are done
before any timed run. Both run in this process with the same ``torch.set_num_threads`` (``--threads``,
default 1: the machine is a shared 2-core box, and 2 intra-op threads with a busy neighbour are very
noisy). The arms are interleaved (bare, stage, stage, bare, ...) ``--repeats`` times each and the best
(shortest) run of each arm is compared; medians are printed too. After the timed runs the stage's PNG files
are decoded and compared with the bare arm's images, proving that both arms did identical calls.

The last line is ``stage/bare throughput: X.XXX`` (images/s of the stage ÷ images/s of the bare pipeline;
the target is ≥ 0.95).

Run (from the repository root, about 2-3 minutes with the defaults)::

    .venv/bin/python benchmarks/bench_generate.py
    .venv/bin/python benchmarks/bench_generate.py --prompts 24 --batch-size 4 --repeats 5 --threads 1

``--work DIR`` keeps the model, the prompts and the run directories in DIR (the model is reused by later
runs); by default everything goes to a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers
from _common import add_work_option, quiet_logs, workspace, write_prompts  # noqa: E402

MODEL_VERSION = "1"  # bump when the model built below changes, so a --work folder does not reuse an old one


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=24, help="number of prompts (= images per arm run)")
    p.add_argument("--batch-size", type=int, default=4, help="images per pipeline call")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per arm (interleaved)")
    p.add_argument("--steps", type=int, default=8, help="denoising steps per image")
    p.add_argument("--size", type=int, default=256, help="image height and width (multiple of 8)")
    p.add_argument("--guidance", type=float, default=7.5, help="guidance scale (> 1: classifier-free)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both arms")
    add_work_option(p, "model and runs")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------- model
def build_model(folder: Path) -> Path:
    """Save a random-weight SD1.5-like pipeline under ``folder`` (once; reused when complete)."""
    target = folder / f"bench-sd15-v{MODEL_VERSION}"
    if (target / ".complete").exists():
        return target
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from visionprefer.models.tiny import save_sd_pipeline, write_clip_tokenizer_files

    if target.exists():
        shutil.rmtree(target)
    vocab, merges = write_clip_tokenizer_files(folder / "_tok")
    tok = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        norm_num_groups=8,
        attention_head_dim=8,
        sample_size=32,  # 256 px / vae_scale_factor 8 (the benchmark passes height/width explicitly)
    )
    torch.manual_seed(1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=256,
    )
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            projection_dim=64,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    save_sd_pipeline(target, tok, unet, vae, text_encoder)
    shutil.rmtree(folder / "_tok")
    (target / ".complete").write_text(MODEL_VERSION)
    return target


# --------------------------------------------------------------------------------------------- arms
def run_bare(model_dir: Path, chunks, *, steps: int, size: int) -> tuple[float, float, list[float], list]:
    """Load the pipeline and make every chunk. Returns (total s, load s, per-call s, images)."""
    import torch
    from diffusers import DiffusionPipeline

    t0 = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    t_load = time.perf_counter() - t0
    calls: list[float] = []
    images: list = []
    for chunk in chunks:
        tc = time.perf_counter()
        out = pipe(
            prompt=[t.prompt for t in chunk.tasks],
            num_inference_steps=steps,
            guidance_scale=chunk.guidance_scale,
            height=size,
            width=size,
            generator=[torch.Generator("cpu").manual_seed(int(t.seed)) for t in chunk.tasks],
            output_type="pil",
        )
        images.extend(out.images)
        calls.append(time.perf_counter() - tc)
    total = time.perf_counter() - t0
    del pipe
    return total, t_load, calls, images


def run_stage(config) -> tuple[float, object]:
    """The prompts and generate stages, as ``visionprefer build`` runs them (the later stages, which read
    the images, are not part of generation: with no feedback they would publish a dataset and a report)."""
    from visionprefer.build import open_run
    from visionprefer.build import run_stage as stage

    t0 = time.perf_counter()
    run = open_run(config)
    stage(config, "prompts", progress=False, run=run)
    gen = stage(config, "generate", progress=False, run=run)
    total = time.perf_counter() - t0
    if gen.failed or gen.made != gen.planned:
        raise SystemExit(f"stage run incomplete: {gen}")
    return total, gen


def make_config(work: Path, model_dir: Path, run_dir: Path, args: argparse.Namespace):
    from visionprefer.config import config_from_dict

    data = {
        "run_dir": str(run_dir),
        "prompts": {"sources": [{"path": "prompts.txt"}]},
        "generate": {
            "generators": [
                {
                    "model": str(model_dir),
                    "name": "bench",
                    "steps": args.steps,
                    "height": args.size,
                    "width": args.size,
                }
            ],
            "guidance_scales": [args.guidance],
            "batch_size": args.batch_size,
            "image_format": "png",
            "device": "cpu",
        },
    }
    return config_from_dict(data, base_dir=str(work), origin="bench_generate")


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.work, "vp-bench-gen-") as work:  # isolated caches, offline, before the imports
        return _bench(args, work)


def _bench(args: argparse.Namespace, work: Path) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import diffusers
    import transformers

    from visionprefer.generate.plan import plan_images
    from visionprefer.prompts.stage import load_prompts
    from visionprefer.rundir import RunDir

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    quiet_logs()

    t = time.perf_counter()
    model_dir = build_model(work)
    print(f"model: {model_dir} (built/checked in {time.perf_counter() - t:.1f} s)")
    write_prompts(work / "prompts.txt", args.prompts)  # varied lengths: tokenisation differs in a batch

    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)

    # Warm-up (untimed): one whole stage run. It also gives the prompts exactly as the stage sees them,
    # from which the bare arm takes the stage's chunk layout and seeds.
    warm_dir = runs / "warmup"
    run_stage(make_config(work, model_dir, warm_dir, args))
    config = make_config(work, model_dir, warm_dir, args)
    chunks = plan_images(load_prompts(RunDir(warm_dir)), config.generate)
    n_images = sum(len(c.tasks) for c in chunks)
    shutil.rmtree(warm_dir)
    run_bare(model_dir, chunks[:1], steps=args.steps, size=args.size)  # warm the bare path too

    print(
        f"setup: {n_images} images in {len(chunks)} pipeline calls (batch size {args.batch_size}, "
        f"guidance {args.guidance}, {args.steps} steps, {args.size}x{args.size}), "
        f"torch threads {torch.get_num_threads()} for both arms, CPU"
    )
    print("timing: both arms include model loading (from_pretrained); imports and warm-up excluded")

    bare_totals: list[float] = []
    bare_loads: list[float] = []
    bare_calls: list[float] = []
    stage_totals: list[float] = []
    bare_images: list = []
    last_stage_dir: Path | None = None
    for r in range(args.repeats):
        order = ("bare", "stage") if r % 2 == 0 else ("stage", "bare")  # ABBA: cancels slow drift
        for arm in order:
            if arm == "bare":
                total, load, calls, bare_images = run_bare(
                    model_dir, chunks, steps=args.steps, size=args.size
                )
                bare_totals.append(total)
                bare_loads.append(load)
                bare_calls.extend(calls)
                print(
                    f"  run {r + 1} bare : {total:6.2f} s  (load {load:.2f} s, "
                    f"calls {min(calls):.2f}-{max(calls):.2f} s)"
                )
            else:
                if last_stage_dir is not None:
                    shutil.rmtree(last_stage_dir, ignore_errors=True)
                last_stage_dir = runs / f"stage-{r}"
                total, _ = run_stage(make_config(work, model_dir, last_stage_dir, args))
                stage_totals.append(total)
                print(f"  run {r + 1} stage: {total:6.2f} s")

    # Same calls, same pixels: the stage's PNGs must equal the bare pipeline's images.
    from PIL import Image

    ids = [t.image_id for c in chunks for t in c.tasks]
    assert last_stage_dir is not None
    files = {p.stem: p for p in (last_stage_dir / "images").rglob("*.png")}
    mismatched = sum(
        1
        for image_id, img in zip(ids, bare_images, strict=True)
        if not np.array_equal(np.asarray(Image.open(files[image_id]).convert("RGB")), np.asarray(img))
    )
    print(f"check: {n_images - mismatched}/{n_images} stage images pixel-identical to the bare pipeline's")

    per_call = statistics.median(bare_calls)
    ok = "OK" if per_call >= 1.0 else "TOO FAST: raise --steps or --size"
    print(
        f"bare pipeline time per call (batch of {args.batch_size}): median {per_call:.2f} s, "
        f"min {min(bare_calls):.2f} s  [>= 1 s: {ok}]"
    )
    print(f"bare model load: median {statistics.median(bare_loads):.2f} s")
    best_bare, best_stage = min(bare_totals), min(stage_totals)
    med_bare, med_stage = statistics.median(bare_totals), statistics.median(stage_totals)
    print(
        f"bare : best {best_bare:.2f} s = {n_images / best_bare:.3f} img/s; "
        f"median {med_bare:.2f} s = {n_images / med_bare:.3f} img/s"
    )
    print(
        f"stage: best {best_stage:.2f} s = {n_images / best_stage:.3f} img/s; "
        f"median {med_stage:.2f} s = {n_images / med_stage:.3f} img/s"
    )
    print(f"stage overhead: {(best_stage - best_bare) / n_images * 1000:.1f} ms per image (best vs best)")
    print(f"stage/bare throughput (medians): {med_bare / med_stage:.3f}")
    if mismatched:
        print(f"WARNING: {mismatched} images differ; the arms did not make identical calls", file=sys.stderr)
    print(f"stage/bare throughput: {best_bare / best_stage:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
