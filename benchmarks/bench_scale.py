"""Scale benchmark: peak memory and seconds of ``status``, ``pairs`` and ``publish`` at 20k and 200k images.

What is measured
----------------
For each size N (``--sizes``, default 20000 and 200000) a setup child writes a synthetic judged run
directory in the real on-disk formats, and then each measured command runs as the CLI, in a fresh process
of its own: ``python -m visionprefer pairs CONFIG``, ``python -m visionprefer publish CONFIG`` and
``python -m visionprefer status RUN_DIR --json`` (in that order, so that ``status`` reads a complete run:
prompts, generation and judge logs, pairs and the published folder). A command's peak is ``ru_maxrss`` of
its process as returned by ``os.wait4``; its seconds are wall-clock seconds of the process.

The run (setup, untimed): N/4 prompts (distinct lines through the real prompts stage), two generators
(presets ``tiny-sd15`` and ``tiny-sd21``) and two guidance scales (grid mode): four images per prompt.
No diffusion runs: every planned image is a hard link to one of a few tiny random PNGs, with the generate
stage's own record (``generation_record``, via ``_common.link_generated_images``). The judge backend's
default ``group_size`` makes one group of four images per prompt; for every group of ``judge_groups`` the
setup appends the record ``Judge.record`` makes from an answer (four aspects per image, each with an
integer score and an explanation of 200-400 characters, and a rank by the weighted overall, with one
group in ten ranked against its scores so that ``settle_ranks`` has work). Explanations are drawn from a
pool of prose and prefixed with the image's id, so no two are equal.

``publish.pair_images`` is off (``--pair-images`` turns it on): with it, every pair row carries both
images' bytes, and the pairs config holds 30 pair rows per prompt, which is disk and encoding time the
memory measurement does not need (image bytes are read one row at a time either way).

After the commands the parent checks the pairs file (N/4 x 6 x 5 rows) and ``status --json`` (every
planned image and group done, the pairs counted). Each size's folder is deleted before the next one.

The last lines are each command's peak RSS and seconds at each size, and, as the very last line,
``peak RSS 200k/20k: X.XX``: the worst ratio of a command's peak at the largest size to its peak at the
smallest, over the three commands (the target is at most 1.3: memory that does not grow with the run).

Run (from the repository root; the 200k run writes some 1.5 GB of run directory and takes several
minutes on a 2-core box)::

    .venv/bin/python benchmarks/bench_scale.py
    .venv/bin/python benchmarks/bench_scale.py --sizes 4000 40000
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/bench_scale.py  # another version
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers
from _common import (  # noqa: E402
    GENERATORS,
    add_work_option,
    link_generated_images,
    mb,
    quiet_logs,
    start_run,
    workspace,
)

GUIDANCE_SCALES = (3.5, 7.5)
PER_PROMPT = len(GENERATORS) * len(GUIDANCE_SCALES)  # images per prompt (grid mode, one sample)
PAIRS_PER_PROMPT = PER_PROMPT * (PER_PROMPT - 1) // 2
ASPECT_ROWS = 5  # the four judge aspects and overall
JUDGE_MODEL = "gpt-4o-2024-08-06"
IMAGE_SIDE = 8  # tiny PNGs: publish reads their bytes, nothing decodes them
DISTINCT_PNGS = 16
EXPLANATION_CHARS = (200, 400)
POOL = 512  # distinct explanation bodies
COMMANDS = ("pairs", "publish", "status")
FILLER = (  # noqa: SIM905
    "the subject is clearly rendered and the background matches the described scene with natural "
    "lighting soft shadows balanced composition and consistent colour although some fine details "
    "look slightly blurred near the edges with minor artifacts in the texture of small objects while "
    "proportions remain plausible and nothing unsafe offensive or disturbing appears anywhere the "
    "requested count of objects is respected but one item is partly hidden behind another and the "
    "style follows the prompt closely with faithful colours and a convincing sense of depth"
).split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000], help="images per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic judge")
    p.add_argument("--pair-images", action="store_true", help="publish the pairs config with image bytes")
    p.add_argument("--keep", action="store_true", help="keep each size's run directory")
    p.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS), help="what to measure")
    add_work_option(p, "run directories")
    p.add_argument("--setup", type=int, default=None, help=argparse.SUPPRESS)  # child: build a run dir
    args = p.parse_args(argv)
    if any(n < PER_PROMPT or n % PER_PROMPT for n in args.sizes):
        p.error(f"--sizes: each size must be a positive multiple of {PER_PROMPT}")
    return args


# --------------------------------------------------------------------------------------------- setup child
def config_dict(size_dir: Path, pair_images: bool) -> dict:
    return {
        "run_dir": str(size_dir / "run"),
        "prompts": {"sources": [{"path": "prompts.txt"}]},
        "generate": {
            "generators": [{"preset": g} for g in GENERATORS],
            "guidance_scales": list(GUIDANCE_SCALES),
            "batch_size": 4,
            "image_format": "png",
            "device": "cpu",
        },
        "annotate": {
            "backend": "judge",
            "judge": {"llm": {"model": JUDGE_MODEL, "base_url": "http://127.0.0.1:9/v1"}},
        },
        "pairs": {"mode": "all"},
        "publish": {"pair_images": pair_images, "pretty_name": "bench_scale"},
    }


def explanation_pool(seed: int) -> list[str]:
    rng = random.Random(seed)
    pool = []
    for _ in range(POOL):
        target = rng.randint(*EXPLANATION_CHARS)
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(FILLER))
        pool.append(" ".join(words)[: target - 1].rstrip() + ".")
    return pool


def write_annotations(config, run, seed: int) -> int:
    """The judge stage's done record of every group (``Judge.record`` of a synthetic answer)."""
    from visionprefer.annotate.judge import Judge, overall_score
    from visionprefer.annotate.stage import KEY, STAGE, judge_groups
    from visionprefer.config import ASPECTS

    proto = Judge(config.annotate.judge, config.annotate.aspect_weights)
    weights = config.annotate.aspect_weights
    groups, waiting = judge_groups(config, run, proto.version)
    if waiting:
        raise SystemExit(f"setup: {waiting} prompts still waiting for images")
    pool = explanation_pool(seed)
    log = run.stage_log(STAGE, KEY, 0)
    for g in groups:
        rng = random.Random(f"{seed}-{g.annotation_id}")
        value = []
        for image_id in g.image_ids:
            result: dict = {}
            for aspect in ASPECTS:
                score = rng.randint(proto.lo, proto.hi)
                text = f"Image {image_id[:8]}, {aspect.replace('_', ' ')} {score}: {rng.choice(pool)}"
                result[aspect] = {"score": float(score), "explanation": text[: EXPLANATION_CHARS[1]]}
            value.append(result)
        order = sorted(range(len(value)), key=lambda i: (-overall_score(value[i], weights), i))
        for rank, i in enumerate(order, start=1):
            value[i]["rank"] = rank
        if len(value) > 1 and rng.random() < 0.1:  # a judge that sometimes contradicts its scores
            a, b = rng.sample(range(len(value)), 2)
            value[a]["rank"], value[b]["rank"] = value[b]["rank"], value[a]["rank"]
        log.record_done([proto.record(g, value)])
    log.close()
    return len(groups)


def child_setup(args: argparse.Namespace, size_dir: Path) -> dict:
    import yaml

    from visionprefer.config import config_from_dict

    n = args.setup
    t0 = time.perf_counter()
    data = config_dict(size_dir, args.pair_images)
    size_dir.mkdir(parents=True, exist_ok=True)
    (size_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def make_config(d: Path):
        return config_from_dict(data, base_dir=str(d), origin=str(d / "config.yaml"))

    config, run, lines = start_run(size_dir, n // PER_PROMPT, make_config)
    chunks = link_generated_images(config, run, side=IMAGE_SIDE, distinct=DISTINCT_PNGS)
    images = sum(len(c.tasks) for c in chunks)
    groups = write_annotations(config, run, args.seed)
    if images != n or groups != len(lines):
        raise SystemExit(f"setup: wrote {images} images and {groups} groups; wanted {n} and {len(lines)}")
    sizes = {name: (run.root / name / "done-rank0.jsonl").stat().st_size for name in ("generate", "annotate")}
    return {"images": images, "groups": groups, "bytes": sizes, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------- parent
def spawn(cmd: list[str]) -> tuple[str, int, float]:
    """Run ``cmd``; returns its stdout, its peak RSS in bytes (``os.wait4``) and its wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stdout.write(out)
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}")
    return out, rusage.ru_maxrss * 1024, seconds


def check(n: int, size_dir: Path, status_json: str) -> list[str]:
    prompts = n // PER_PROMPT
    problems = []
    with open(size_dir / "run" / "pairs" / "pairs.jsonl", "rb") as f:
        rows = sum(1 for _ in f)
    if rows != prompts * PAIRS_PER_PROMPT * ASPECT_ROWS:
        problems.append(f"pairs.jsonl has {rows} rows, wanted {prompts * PAIRS_PER_PROMPT * ASPECT_ROWS}")
    st = json.loads(status_json)["stages"]
    if st["generate"]["done"] != n or st["generate"]["planned"] != n:
        problems.append(f"status generate: {st['generate']['done']}/{st['generate']['planned']}")
    if st["annotate"]["done"] != prompts or st["annotate"]["planned"] != prompts:
        problems.append(f"status annotate: {st['annotate']['done']}/{st['annotate']['planned']}")
    if st["pairs"]["pairs"] != rows:
        problems.append(f"status pairs: {st['pairs']['pairs']}")
    if st["publish"]["state"] != "done" or st["publish"]["done"] != n:
        problems.append(f"status publish: {st['publish']['state']} {st['publish']['done']}")
    return problems


def bench(args: argparse.Namespace, work: Path) -> int:
    import visionprefer

    print(f"visionprefer from {Path(visionprefer.__file__).parent}")
    results: dict[int, dict[str, tuple[int, float]]] = {}
    for n in args.sizes:
        size_dir = work / f"images-{n}"
        shutil.rmtree(size_dir, ignore_errors=True)
        size_dir.mkdir(parents=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--setup", str(n), "--work", str(size_dir)]
        cmd += ["--seed", str(args.seed)] + (["--pair-images"] if args.pair_images else [])
        out, _, seconds = spawn(cmd)
        made = json.loads(out.strip().splitlines()[-1])
        print(
            f"{n} images: setup {seconds:.1f} s ({made['groups']} groups; generate log "
            f"{mb(made['bytes']['generate'])} MB, annotate log {mb(made['bytes']['annotate'])} MB)",
            flush=True,
        )
        results[n] = {}
        status_json = ""
        for command in args.commands:
            vp = [sys.executable, "-m", "visionprefer"]
            if command == "status":
                cmd = [*vp, "status", str(size_dir / "run"), "--json"]
            else:
                cmd = [*vp, command, str(size_dir / "config.yaml"), "-q"]
            out, peak, seconds = spawn(cmd)
            if command == "status":
                status_json = out
            results[n][command] = (peak, seconds)
            print(f"  {command:<8} peak RSS {mb(peak):>7} MB  {seconds:7.1f} s", flush=True)
        problems = check(n, size_dir, status_json) if len(args.commands) == len(COMMANDS) else []
        if problems:
            print(f"{n} images: checks FAILED ({'; '.join(problems)}); kept {size_dir}")
            return 1
        if not args.keep:
            shutil.rmtree(size_dir, ignore_errors=True)
    small, large = min(results), max(results)
    print()
    print(f"{'command':<8} " + " ".join(f"{f'{n // 1000}k MB':>9} {f'{n // 1000}k s':>8}" for n in results))
    ratios = {}
    for command in args.commands:
        cells = " ".join(f"{mb(results[n][command][0]):>9} {results[n][command][1]:>8.1f}" for n in results)
        ratios[command] = results[large][command][0] / results[small][command][0]
        print(f"{command:<8} {cells}  ratio {ratios[command]:.2f}")
    label = f"{large // 1000}k/{small // 1000}k" if small >= 1000 else f"{large}/{small}"
    print(f"peak RSS {label}: {max(ratios.values()):.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup is not None:
        quiet_logs()
        result = child_setup(args, args.work.resolve())
        print(json.dumps(result), flush=True)
        return 0
    with workspace(args.work, "vp-bench-scale-", datasets_offline=True) as work:
        return bench(args, work)


if __name__ == "__main__":
    raise SystemExit(main())
