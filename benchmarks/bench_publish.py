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
(``visionprefer.generate.stage.generation_record``: every metadata field, ``file``, ``format``,
``image_sha256``, ``chunk``, ``rank``) to ``generate/done-rank0.jsonl``. ``annotate.backend`` is ``none``: no feedback, no pairs, so the
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
exists. Each size's folder is deleted before the next size starts. The subprocesses, the memory marks and
the synthetic run directory are helpers shared with ``bench_pairs.py`` (``benchmarks/_common.py``).

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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers
from _common import GENERATORS, Children, MemoryMarks, link_generated_images, mb, run_config, start_run  # noqa: E402

CHILDREN = Children(__file__, measured="publish", unit="rows", forward=("image_size", "distinct"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000], help="image rows per run")
    p.add_argument("--image-size", type=int, default=64, help="side of the synthetic PNGs in pixels")
    p.add_argument("--distinct", type=int, default=64, help="distinct PNG files (hard-linked per image)")
    CHILDREN.add_options(p)
    args = p.parse_args(argv)
    if any(n < len(GENERATORS) or n % len(GENERATORS) for n in args.sizes):
        p.error(f"--sizes: each size must be a positive multiple of {len(GENERATORS)}")
    return args


def make_config(size_dir: Path):
    return run_config(size_dir, guidance_scales=(7.5,), annotate={"backend": "none"}, origin="bench_publish")


# --------------------------------------------------------------------------------------------- setup child
def child_setup(args: argparse.Namespace, size_dir: Path) -> dict:
    """A run directory with N planned images, all 'generated': prompts stage, image files, done records."""
    from visionprefer.generate.stage import generation_state

    n = args.setup
    t0 = time.perf_counter()
    config, run, lines = start_run(size_dir, n // len(GENERATORS), make_config)
    chunks = link_generated_images(config, run, side=args.image_size, distinct=args.distinct)
    planned = {t.image_id for c in chunks for t in c.tasks}
    count = sum(len(c.tasks) for c in chunks)
    done = generation_state(run).done
    if count != n or len(planned) != n or not planned <= done.keys():
        raise SystemExit(f"setup: planned {len(planned)}, wrote {count}, done {len(done)}; wanted {n}")
    return {"images": count, "prompts": len(lines), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------- publish child
def child_publish(args: argparse.Namespace, size_dir: Path) -> dict:
    """Publish the run directory and report memory; the caller reads the process peak from os.wait4."""
    import datasets  # noqa: F401  (imported by the stage; here so that the baseline includes it)
    import pyarrow.parquet  # noqa: F401

    import visionprefer.publish.stage as stage_mod
    import visionprefer.status as status_mod
    from visionprefer.build import run_stage

    config = make_config(size_dir)
    memory = MemoryMarks()
    memory.watch(stage_mod, "collect")
    memory.watch(stage_mod, "write_shards", lambda folder, *a, **kw: f"write_shards({folder.name})")
    memory.watch(stage_mod, "render_card")
    memory.watch(status_mod, "run_status")
    try:  # the HTML build report, written by publish after the card (newer package versions)
        import visionprefer.publish.report as report_mod
    except ImportError:
        pass
    else:
        memory.watch(report_mod, "write_report")

    t0 = time.perf_counter()
    report = run_stage(config, "publish", progress=False)
    seconds = time.perf_counter() - t0
    memory.mark("publish end")
    return {"seconds": seconds, "counts": report.counts, "folder": report.folder, **memory.result()}


# --------------------------------------------------------------------------------------------- check child
def child_check(args: argparse.Namespace, size_dir: Path) -> dict:
    """Read the published folder back with pyarrow (its own process, so the publish peak stays clean)."""
    import hashlib

    import pyarrow.parquet as pq

    n = args.check
    out = size_dir / "run" / "dataset"
    image_files = sorted((out / "data" / "images").glob("*.parquet"))  # every split
    prompt_files = sorted((out / "data" / "prompts").glob("*.parquet"))
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
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return CHILDREN.main(
        args, "vp-bench-pub-", _bench, setup=child_setup, measure=child_publish, check=child_check
    )


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
    peaks = CHILDREN.run_sizes(args, work, report)
    if peaks is None:
        return 1
    print(CHILDREN.peak_ratio_line(peaks))
    return 0


def report(n: int, made: dict, res: dict, peak: int, chk: dict) -> bool:
    """Print one size's results; True when its checks passed."""
    print(
        f"{n:>6} rows: publish {res['seconds']:.1f} s ({n / res['seconds']:.0f} rows/s), "
        f"peak RSS {mb(peak)} MB, parquet {mb(chk['parquet_bytes'])} MB in {chk['shards']} image shards "
        f"[setup {made['seconds']:.1f} s, {made['prompts']} prompts]"
    )
    print(CHILDREN.memory_line(res, peak, "publish"))
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
    return not chk["problems"]


if __name__ == "__main__":
    sys.exit(main())
