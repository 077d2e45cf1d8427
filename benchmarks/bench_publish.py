"""Publishing benchmark: peak memory of the publish stage at 5,000 and 50,000 image rows.

What is measured
----------------
For each size N (``--sizes``, default 5000 and 50000) the script builds a synthetic but valid run directory
and publishes it with the real stage, ``visionprefer.build.run_stage(config, "publish", progress=False)``
(which calls ``publish_dataset``: ``collect``, four ``write_shards`` calls, the dataset card, the HTML build
report).

The run has N/2 prompts (a text file of distinct lines, through the real prompts stage) and two generators
(presets ``tiny-sd15`` and ``tiny-sd21``, one guidance scale), so the plan (``plan_images``) has exactly N
images. No diffusion runs: for every planned image the setup hard-links one of ``--distinct`` small random
PNGs (``--image-size`` pixels square, 64 by default: about 12 KB each, like the tiny models' noise) to
``images/<ab>/<image_id>.png`` and appends the generation record the generate stage would write
(``_ChunkRunner._write``: every metadata field, ``file``, ``format``, ``image_sha256``, ``chunk``,
``rank``) to ``generate/done-rank0.jsonl``. ``annotate.backend`` is ``none``: no feedback, no pairs, so the
dataset is the ``images`` and ``prompts`` configs (``pairs`` and ``dpo`` are written empty).

Each size runs in two fresh subprocesses of this script: ``--setup N`` builds the run directory, then
``--publish N`` publishes it. Keeping the setup out of the publishing process means the measured peak is
the publish process's alone: the Python interpreter, the imports the stage needs (``visionprefer``,
``datasets``, ``pyarrow``) and the publish step. The peak is ``ru_maxrss`` of the publish process as
returned by ``os.wait4`` (it cannot be lowered by anything the process does, and includes import-time
spikes). The child also prints its resident size after the imports and its high-water mark (``VmHWM``) at
the edges of ``collect``, ``write_shards``, ``render_card``, ``run_status`` and ``write_report`` (thin
wrappers around the unmodified functions), so growth with N can be traced to a step.

After publishing, a third child (``--check N``, so that reading the output does not count towards the
peak) checks with pyarrow that ``data/images`` holds exactly N rows (and ``data/prompts`` N/2), that the
image bytes of the first row group match their ``image_sha256``, and that ``README.md`` (written last)
exists. Each size's folder is deleted before the next size starts.

The last line is ``peak RSS 50k/5k: X.XX`` (the publish process's peak at the largest size ÷ at the
smallest; the target is ≤ 1.2).

Run (from the repository root, well under a minute with the defaults on a 2-core box; the 50k run needs
about 0.45 GB of disk for a moment, mostly its Parquet files)::

    .venv/bin/python benchmarks/bench_publish.py
    .venv/bin/python benchmarks/bench_publish.py --sizes 5000 50000 --image-size 64 --distinct 64

``--work DIR`` puts the run directories in DIR (a size's folder is still deleted once it passed its
checks, and kept when they fail); by default everything goes to a temporary folder deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "a photo of a cat sitting on a red sofa",
    "two dogs playing in the snow at dawn",
    "a blue vintage car parked by the sea",
    "three apples and a pear on a wooden table",
    "a lighthouse on a cliff during a storm",
    "an astronaut riding a horse on the moon",
    "a bowl of ramen with a soft boiled egg",
    "a watercolor painting of a quiet harbor",
)
GENERATORS = ("tiny-sd15", "tiny-sd21")
RESULT_TAG = "RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000], help="image rows per run")
    p.add_argument("--image-size", type=int, default=64, help="side of the synthetic PNGs in pixels")
    p.add_argument("--distinct", type=int, default=64, help="distinct PNG files (hard-linked per image)")
    p.add_argument("--work", type=Path, default=None, help="keep run directories here (default: temp dir)")
    p.add_argument("--setup", type=int, default=None, help=argparse.SUPPRESS)  # child: build a run dir
    p.add_argument("--publish", type=int, default=None, help=argparse.SUPPRESS)  # child: publish it
    p.add_argument("--check", type=int, default=None, help=argparse.SUPPRESS)  # child: read it back
    args = p.parse_args(argv)
    if any(n < len(GENERATORS) or n % len(GENERATORS) for n in args.sizes):
        p.error(f"--sizes: each size must be a positive multiple of {len(GENERATORS)}")
    return args


# --------------------------------------------------------------------------------------------- helpers
def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux /proc)."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def config_data(size_dir: Path) -> dict:
    return {
        "run_dir": str(size_dir / "run"),
        "prompts": {"sources": [{"path": "prompts.txt"}]},
        "generate": {
            "generators": [{"preset": g} for g in GENERATORS],
            "guidance_scales": [7.5],
            "batch_size": 4,
            "image_format": "png",
            "device": "cpu",
        },
        "annotate": {"backend": "none"},
    }


def make_config(size_dir: Path):
    from visionprefer.config import config_from_dict

    return config_from_dict(config_data(size_dir), base_dir=str(size_dir), origin="bench_publish")


# --------------------------------------------------------------------------------------------- setup child
def child_setup(args: argparse.Namespace, size_dir: Path) -> dict:
    """A run directory with N planned images, all 'generated': prompts stage, image files, done records."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from visionprefer.build import open_run, run_stage
    from visionprefer.generate.plan import plan_images, resolve_generators
    from visionprefer.generate.stage import KEY, STAGE, generation_state
    from visionprefer.prompts.stage import load_prompts

    n = args.setup
    t0 = time.perf_counter()
    size_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{WORDS[i % len(WORDS)]}, variation {i}" for i in range(n // len(GENERATORS))]
    (size_dir / "prompts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = make_config(size_dir)
    run = open_run(config)
    run_stage(config, "prompts", progress=False, run=run)

    # A few distinct random PNGs, hard-linked per image: real, decodable files at little disk and time.
    rng = np.random.default_rng(0)
    side = args.image_size
    sources: list[tuple[Path, str]] = []
    src_dir = size_dir / "png"
    src_dir.mkdir(exist_ok=True)
    for k in range(args.distinct):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
        path = src_dir / f"{k}.png"
        path.write_bytes(data)
        sources.append((path, hashlib.sha256(data).hexdigest()))

    specs = {s.name: s for s in resolve_generators(config.generate)}
    chunks = plan_images(load_prompts(run), config.generate)
    log = run.stage_log(STAGE, KEY, 0)
    count = 0
    for chunk in chunks:
        spec = specs[chunk.generator]
        records = []
        for task in chunk.tasks:
            src, sha = sources[count % len(sources)]
            path = run.image_path(task.image_id, "png")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, path)
            records.append(  # the fields of generate.stage._ChunkRunner._write, in its order
                {
                    "image_id": task.image_id,
                    "prompt_id": task.prompt_id,
                    "prompt": task.prompt,
                    "generator": spec.generator_column,
                    "generator_name": spec.name,
                    "model_id": spec.model_id,
                    "revision": spec.revision,
                    "pipeline": "StableDiffusionPipeline",
                    "scheduler": "DDIMScheduler",
                    "steps": spec.steps,
                    "guidance_scale": task.guidance_scale,
                    "seed": task.seed,
                    "sample_index": task.sample_index,
                    "height": side,
                    "width": side,
                    "dtype": "float32",
                    "file": str(path.relative_to(run.root)),
                    "format": "png",
                    "image_sha256": sha,
                    "chunk": chunk.index,
                    "rank": 0,
                }
            )
            count += 1
        log.record_done(records)
    log.close()
    planned = {t.image_id for c in chunks for t in c.tasks}
    done = generation_state(run).done
    if count != n or len(planned) != n or not planned <= done.keys():
        raise SystemExit(f"setup: planned {len(planned)}, wrote {count}, done {len(done)}; wanted {n}")
    return {"images": count, "prompts": len(lines), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------- publish child
def child_publish(args: argparse.Namespace, size_dir: Path) -> dict:
    """Publish the run directory and report memory; the caller reads the process peak from os.wait4."""
    import resource

    import datasets  # noqa: F401  (imported by the stage; here so that the baseline includes it)
    import pyarrow.parquet  # noqa: F401

    import visionprefer.publish.stage as stage_mod
    import visionprefer.status as status_mod
    from visionprefer.build import run_stage

    config = make_config(size_dir)
    base = proc_status()
    import_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    marks: list[tuple[str, int, int]] = [("after imports", base["VmRSS"], base["VmHWM"])]

    def watch(module, name: str) -> None:  # record VmRSS/VmHWM at entry and exit; behaviour unchanged
        fn = getattr(module, name)

        def wrapper(*a, **kw):
            label = f"{name}({a[0].name})" if name == "write_shards" else name  # the config's folder
            s = proc_status()
            marks.append((f"{label} start", s["VmRSS"], s["VmHWM"]))
            try:
                return fn(*a, **kw)
            finally:
                s = proc_status()
                marks.append((f"{label} end", s["VmRSS"], s["VmHWM"]))

        setattr(module, name, wrapper)

    for name in ("collect", "write_shards", "render_card"):
        watch(stage_mod, name)
    watch(status_mod, "run_status")
    try:  # the HTML build report, written by publish after the card (newer package versions)
        import visionprefer.publish.report as report_mod
    except ImportError:
        pass
    else:
        watch(report_mod, "write_report")

    t0 = time.perf_counter()
    report = run_stage(config, "publish", progress=False)
    seconds = time.perf_counter() - t0
    end = proc_status()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    marks.append(("publish end", end["VmRSS"], end["VmHWM"]))

    return {
        "seconds": seconds,
        "counts": report.counts,
        "folder": report.folder,
        "rss_after_imports": base["VmRSS"],
        "import_peak": import_peak,
        "self_peak": peak,
        "marks": marks,
    }


# --------------------------------------------------------------------------------------------- check child
def child_check(args: argparse.Namespace, size_dir: Path) -> dict:
    """Read the published folder back with pyarrow (its own process, so the publish peak stays clean)."""
    import hashlib

    import pyarrow.parquet as pq

    n = args.check
    out = size_dir / "run" / "dataset"
    image_files = sorted((out / "data" / "images").glob("train-*.parquet"))
    prompt_files = sorted((out / "data" / "prompts").glob("train-*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in image_files)
    prompt_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in prompt_files)
    first = pq.ParquetFile(image_files[0]).read_row_group(0, columns=["image", "image_sha256"]).to_pylist()
    sha_ok = all(hashlib.sha256(r["image"]["bytes"]).hexdigest() == r["image_sha256"] for r in first)
    problems = []
    if rows != n:
        problems.append(f"images config has {rows} rows, expected {n}")
    if prompt_rows != n // len(GENERATORS):
        problems.append(f"prompts config has {prompt_rows} rows, expected {n // len(GENERATORS)}")
    if not sha_ok:
        problems.append("image bytes do not match image_sha256")
    if not (out / "README.md").exists():
        problems.append("README.md missing")
    return {
        "rows": rows,
        "prompt_rows": prompt_rows,
        "shards": len(image_files),
        "parquet_bytes": sum(p.stat().st_size for p in out.rglob("*.parquet")),
        "problems": problems,
    }


# --------------------------------------------------------------------------------------------- parent
def spawn(args: argparse.Namespace, role: str, n: int, size_dir: Path) -> tuple[dict, int]:
    """Run this script as a child; returns its RESULT record and its peak RSS (bytes) from os.wait4."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        f"--{role}",
        str(n),
        "--work",
        str(size_dir),
        "--image-size",
        str(args.image_size),
        "--distinct",
        str(args.distinct),
        "--sizes",
        str(n),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    proc.stdout.close()
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stdout.write(stdout)
        raise SystemExit(f"{role} child for {n} rows failed with exit code {proc.returncode}")
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    return json.loads(lines[-1][len(RESULT_TAG) :]), rusage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup is not None or args.publish is not None or args.check is not None:
        return _child(args)
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="vp-bench-pub-")) if own_work else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # Isolate caches and stay offline; the children inherit this environment.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(work / "hf-home")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.pop("WORLD_SIZE", None)  # single process
    try:
        return _bench(args, work)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _child(args: argparse.Namespace) -> int:
    import logging
    import warnings

    logging.getLogger("visionprefer").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    size_dir = args.work.resolve()
    if args.setup is not None:
        result = child_setup(args, size_dir)
    elif args.publish is not None:
        result = child_publish(args, size_dir)
    else:
        result = child_check(args, size_dir)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


def _bench(args: argparse.Namespace, work: Path) -> int:
    print(
        f"setup: {' and '.join(map(str, args.sizes))} image rows; {len(GENERATORS)} generators x N/2 "
        f"prompts, annotate backend none; {args.distinct} distinct {args.image_size}x{args.image_size} random PNGs "
        "hard-linked per image; rows_per_shard 500"
    )
    print(
        "measure: each size builds its run directory in one subprocess and publishes it in a fresh one; "
        "peak RSS = ru_maxrss of the publish process (os.wait4): interpreter + imports + publish"
    )
    peaks: dict[int, int] = {}
    for n in args.sizes:
        size_dir = work / f"rows-{n}"
        shutil.rmtree(size_dir, ignore_errors=True)
        made, _ = spawn(args, "setup", n, size_dir)
        res, peak = spawn(args, "publish", n, size_dir)
        chk, _ = spawn(args, "check", n, size_dir)
        peaks[n] = peak
        base = res["rss_after_imports"]
        print(
            f"{n:>6} rows: publish {res['seconds']:.1f} s ({n / res['seconds']:.0f} rows/s), "
            f"peak RSS {mb(peak)} MB, parquet {mb(chk['parquet_bytes'])} MB in {chk['shards']} image shards "
            f"[setup {made['seconds']:.1f} s, {made['prompts']} prompts]"
        )
        print(
            f"        memory: after imports {mb(base)} MB (import peak {mb(res['import_peak'])} MB); "
            f"publish adds {mb(peak - base)} MB at its peak"
        )
        prev = res["marks"][0][2]
        for label, rss, hwm in res["marks"][1:]:
            if label.endswith(" end"):
                rise = f", peak +{mb(hwm - prev)} MB during it" if hwm > prev else ""
                print(f"          {label[:-4]:<22} RSS after {mb(rss):>7} MB{rise}")
            prev = max(prev, hwm)
        status = "OK" if not chk["problems"] else "FAILED: " + "; ".join(chk["problems"])
        print(
            f"        check (pyarrow): images config {chk['rows']} rows, prompts config {chk['prompt_rows']} "
            f"rows, sha256 of first row group's image bytes, README.md: {status}"
        )
        if chk["problems"]:
            return 1
        shutil.rmtree(size_dir, ignore_errors=True)
    small, large = min(args.sizes), max(args.sizes)
    label = f"{large // 1000}k/{small // 1000}k" if small >= 1000 else f"{large}/{small}"
    print(f"peak RSS {label}: {peaks[large] / peaks[small]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
