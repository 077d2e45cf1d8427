"""Pairs benchmark: peak memory of the pairs stage (VLM-judge backend) at 4,000 and 40,000 images.

What is measured
----------------
For each size N (``--sizes``, default 4000 and 40000) the script builds a synthetic but valid run directory
and derives its preference pairs with the real stage, ``visionprefer.build.run_stage(config, "pairs",
progress=False)`` (``run_pairs_stage``: ``load_feedback`` over the judge's annotations, the generation
index, ``derive_pairs`` and ``write_jsonl`` of ``pairs/pairs.jsonl``).

The run has N/4 prompts (a text file of distinct lines, through the real prompts stage), two generators
(presets ``tiny-sd15`` and ``tiny-sd21``) and two guidance scales (grid mode), so the plan
(``plan_images``) has exactly N images, four per prompt. No diffusion runs: for every planned image the
setup hard-links one of a few small random PNGs to ``images/<ab>/<image_id>.png`` and appends the
generation record the generate stage would write (every field of ``_ChunkRunner._write``) to
``generate/done-rank0.jsonl``. ``annotate.backend`` is ``judge`` with the default ``group_size`` (all four
images of a prompt in one group) and an ``llm`` section pointing at a closed port: no server is contacted.
For every group of ``judge_groups(config, run, guide_version)`` the setup appends to
``annotate/done-rank0.jsonl`` the record ``annotate_with_judge`` writes (annotation_id, prompt_id,
image_ids, order, judge, guide_version, scale, results, rank_consistent, rank_issues). The results are what
``validate_judgement`` returns: per image, four aspects with an integer score 1-5 (as a float) and an
explanation of about 150 characters, and a rank (by the weighted overall; one group in ten gets two ranks
swapped, so some records are rank-inconsistent, as ``rank_issues``, the real function, finds). The random
draws are seeded per group (``--seed`` and the annotation id), so the synthetic judge does not depend on
the order in which a package version lists the groups, and two versions see the same run.

Each size runs in three fresh subprocesses of this script: ``--setup N`` builds the run directory,
``--measure N`` runs the pairs stage, ``--check N`` reads the pairs file back. Keeping the setup out of the
measured process means its peak is the pairs stage's alone: the interpreter, the imports the stage needs
and the stage. The peak is ``ru_maxrss`` of the measure process as returned by ``os.wait4``. The measure
child also records its resident size after the imports and the high-water mark (``VmHWM``) at the edges of
``load_feedback``, ``generation_index`` (``generation_state`` in older versions), ``derive_pairs`` and
``write_jsonl`` (thin wrappers around the unmodified functions), printed in call order with the rise of
the high-water mark since the previous mark, so growth with N can be traced to a step. ``derive_pairs``
yields its pairs in current versions (its work then happens inside ``write_jsonl``, and its end is marked
when the generator is exhausted); in older ones it returned a list.

The check child verifies that ``pairs/pairs.jsonl`` holds exactly N/4 prompts x 6 pairs x 5 aspects
(the four judge aspects and ``overall``) rows, each aspect N/4 x 6 times, with distinct pair ids,
``image_id_0 < image_id_1`` and every ``label_0`` in {0, 0.5, 1}; and that the stage's report counted the
same number of pairs. Each size's folder is deleted before the next size starts. Every child reports
where it imported ``visionprefer`` from, so a run against another checkout (``PYTHONPATH=<checkout>``) can
be confirmed.

The last lines are the peak RSS at each size, ``bytes per image beyond the small run: X``
((peak at the largest size - peak at the smallest) / (largest N - smallest N)) and ``peak RSS 40k/4k:
X.XX``. No target: it is a measurement.

Run (from the repository root; about a minute with the defaults on a 2-core box, the 40k run writing some
0.25 GB of run directory for a moment)::

    .venv/bin/python benchmarks/bench_pairs.py
    .venv/bin/python benchmarks/bench_pairs.py --sizes 4000 40000
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/bench_pairs.py  # another version

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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers of bench_publish
from bench_publish import GENERATORS, RESULT_TAG, WORDS, mb, proc_status  # noqa: E402

GUIDANCE_SCALES = (3.5, 7.5)
PER_PROMPT = len(GENERATORS) * len(GUIDANCE_SCALES)  # images per prompt (grid mode, one sample)
PAIRS_PER_PROMPT = PER_PROMPT * (PER_PROMPT - 1) // 2
ASPECT_ROWS = ("prompt_following", "fidelity", "aesthetic", "harmlessness", "overall")
JUDGE_MODEL = "gpt-4o-2024-08-06"
IMAGE_SIDE = 64  # synthetic PNGs: the pairs stage only checks that the files exist
DISTINCT_PNGS = 16
EXPLANATION_CHARS = 150
FILLER = (  # noqa: SIM905  (a sentence reads better than one word per line)
    "the subject is clearly rendered and the background matches the described scene with natural "
    "lighting soft shadows balanced composition and consistent colour although some fine details "
    "look slightly blurred near the edges with minor artifacts in the texture of small objects while "
    "proportions remain plausible and nothing unsafe offensive or disturbing appears anywhere"
).split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4000, 40000], help="images per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic judge scores")
    p.add_argument("--work", type=Path, default=None, help="keep run directories here (default: temp dir)")
    p.add_argument("--setup", type=int, default=None, help=argparse.SUPPRESS)  # child: build a run dir
    p.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)  # child: run the stage
    p.add_argument("--check", type=int, default=None, help=argparse.SUPPRESS)  # child: read it back
    args = p.parse_args(argv)
    if any(n < PER_PROMPT or n % PER_PROMPT for n in args.sizes):
        p.error(f"--sizes: each size must be a positive multiple of {PER_PROMPT}")
    return args


# --------------------------------------------------------------------------------------------- helpers
def config_data(size_dir: Path) -> dict:
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
    }


def make_config(size_dir: Path):
    from visionprefer.config import config_from_dict

    return config_from_dict(config_data(size_dir), base_dir=str(size_dir), origin="bench_pairs")


def package_file() -> str:
    import visionprefer

    return str(visionprefer.__file__)


def explanation(rng, aspect: str, score: int) -> str:
    """About EXPLANATION_CHARS characters of judge-like prose, different for every image and aspect."""
    words = [f"{aspect.replace('_', ' ').capitalize()} {score}/5:"]
    while sum(len(w) + 1 for w in words) < EXPLANATION_CHARS:
        words.append(rng.choice(FILLER))
    return " ".join(words)[: EXPLANATION_CHARS - 1].rstrip() + "."


# --------------------------------------------------------------------------------------------- setup child
def write_generation(config, run, n: int) -> int:
    """Image files (hard links to a few random PNGs) and the generate stage's done records for the plan."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from visionprefer.generate.plan import plan_images, resolve_generators
    from visionprefer.generate.stage import KEY, STAGE
    from visionprefer.prompts.stage import load_prompts

    rng = np.random.default_rng(0)
    sources: list[tuple[Path, str]] = []
    src_dir = run.root.parent / "png"
    src_dir.mkdir(exist_ok=True)
    for k in range(DISTINCT_PNGS):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, format="PNG")
        path = src_dir / f"{k}.png"
        path.write_bytes(buf.getvalue())
        sources.append((path, hashlib.sha256(buf.getvalue()).hexdigest()))

    specs = {s.name: s for s in resolve_generators(config.generate)}
    log = run.stage_log(STAGE, KEY, 0)
    count = 0
    for chunk in plan_images(load_prompts(run), config.generate):
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
                    "height": IMAGE_SIDE,
                    "width": IMAGE_SIDE,
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
    return count


def write_annotations(config, run, seed: int) -> tuple[int, int]:
    """The judge stage's done record for every group; returns (groups, rank-inconsistent groups)."""
    import random

    from visionprefer.annotate.judge import load_guide, overall_score, rank_issues
    from visionprefer.annotate.stage import KEY, STAGE, judge_groups
    from visionprefer.config import ASPECTS

    judge = config.annotate.judge
    weights = config.annotate.aspect_weights
    lo, hi = judge.score_min, judge.score_max
    _, version = load_guide(judge)
    groups, waiting = judge_groups(config, run, version)
    if waiting:
        raise SystemExit(f"setup: {waiting} prompts still waiting for images")
    log = run.stage_log(STAGE, KEY, 0)
    inconsistent = 0
    for g in groups:
        rng = random.Random(f"{seed}-{g.annotation_id}")  # a group's scores do not depend on group order
        value = []  # what validate_judgement returns, per image in the order shown
        for _ in g.image_ids:
            result: dict = {}
            for aspect in ASPECTS:
                score = rng.randint(lo, hi)
                result[aspect] = {"score": float(score), "explanation": explanation(rng, aspect, score)}
            value.append(result)
        order = sorted(range(len(value)), key=lambda i: (-overall_score(value[i], weights), i))
        for rank, i in enumerate(order, start=1):
            value[i]["rank"] = rank
        if len(value) > 1 and rng.random() < 0.1:  # a judge that sometimes contradicts its scores
            a, b = rng.sample(range(len(value)), 2)
            value[a]["rank"], value[b]["rank"] = value[b]["rank"], value[a]["rank"]
        issues = rank_issues(value, weights)
        inconsistent += bool(issues)
        log.record_done(
            [
                {
                    "annotation_id": g.annotation_id,
                    "prompt_id": g.prompt_id,
                    "image_ids": list(g.image_ids),
                    "order": g.order,
                    "judge": judge.llm.model,
                    "guide_version": version,
                    "scale": [lo, hi],
                    "results": dict(zip(g.image_ids, value, strict=True)),
                    "rank_consistent": not issues,
                    "rank_issues": issues,
                }
            ]
        )
    log.close()
    if any(len(g.image_ids) != PER_PROMPT for g in groups):
        raise SystemExit(f"setup: a group does not hold the {PER_PROMPT} images of its prompt")
    return len(groups), inconsistent


def child_setup(args: argparse.Namespace, size_dir: Path) -> dict:
    """A run directory with N generated images, four per prompt, each prompt annotated by the 'judge'."""
    from visionprefer.build import open_run, run_stage

    n = args.setup
    t0 = time.perf_counter()
    size_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{WORDS[i % len(WORDS)]}, variation {i}" for i in range(n // PER_PROMPT)]
    (size_dir / "prompts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = make_config(size_dir)
    run = open_run(config)
    run_stage(config, "prompts", progress=False, run=run)
    images = write_generation(config, run, n)
    groups, inconsistent = write_annotations(config, run, args.seed)
    if images != n or groups != len(lines):
        raise SystemExit(f"setup: wrote {images} images and {groups} groups; wanted {n} and {len(lines)}")
    return {
        "images": images,
        "prompts": len(lines),
        "groups": groups,
        "inconsistent": inconsistent,
        "annotate_bytes": (run.root / "annotate" / "done-rank0.jsonl").stat().st_size,
        "generate_bytes": (run.root / "generate" / "done-rank0.jsonl").stat().st_size,
        "seconds": time.perf_counter() - t0,
        "package": package_file(),
    }


# --------------------------------------------------------------------------------------------- measure child
def child_measure(args: argparse.Namespace, size_dir: Path) -> dict:
    """Run the pairs stage and report memory; the caller reads the process peak from os.wait4."""
    import inspect
    import resource

    import visionprefer.annotate.judge  # noqa: F401  (imported by the stage; in the baseline)
    import visionprefer.annotate.stage as annotate_mod
    import visionprefer.generate.stage as generate_mod
    import visionprefer.pairs.stage as pairs_mod
    from visionprefer.build import run_stage

    config = make_config(size_dir)
    base = proc_status()
    import_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    marks: list[tuple[str, int, int]] = [("after imports", base["VmRSS"], base["VmHWM"])]

    def mark(label: str) -> None:
        s = proc_status()
        marks.append((label, s["VmRSS"], s["VmHWM"]))

    def exhausted(gen, name: str):
        try:
            yield from gen
        finally:
            mark(f"{name} exhausted")

    def watch(module, name: str) -> None:  # record VmRSS/VmHWM at entry and exit; behaviour unchanged
        fn = getattr(module, name, None)
        if fn is None:  # not in this version of the package
            return

        def wrapper(*a, **kw):
            mark(f"{name} start")
            result = fn(*a, **kw)
            if inspect.isgenerator(result):  # derive_pairs now: the work happens as it is consumed
                mark(f"{name} returned a generator")
                return exhausted(result, name)
            mark(f"{name} end")
            return result

        setattr(module, name, wrapper)

    # The stage imports load_feedback and the generation helpers inside its body (module attributes, so
    # the wrappers are seen); derive_pairs and write_jsonl are globals of visionprefer.pairs.stage.
    watch(annotate_mod, "load_feedback")
    watch(generate_mod, "generation_index")  # current versions
    watch(generate_mod, "generation_state")  # older ones (and generation_index's callers, if any)
    watch(pairs_mod, "derive_pairs")
    watch(pairs_mod, "write_jsonl")

    t0 = time.perf_counter()
    report = run_stage(config, "pairs", progress=False)
    seconds = time.perf_counter() - t0
    mark("pairs end")
    return {
        "seconds": seconds,
        "pairs": report.pairs,
        "ties": report.ties,
        "by_aspect": report.by_aspect,
        "rss_after_imports": base["VmRSS"],
        "import_peak": import_peak,
        "self_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "marks": marks,
        "package": package_file(),
    }


# --------------------------------------------------------------------------------------------- check child
def child_check(args: argparse.Namespace, size_dir: Path) -> dict:
    """Read pairs/pairs.jsonl back (its own process, so the stage's peak stays clean)."""
    n = args.check
    prompts = n // PER_PROMPT
    path = size_dir / "run" / "pairs" / "pairs.jsonl"
    rows = 0
    by_aspect: dict[str, int] = {}
    labels: dict[float, int] = {}
    pair_ids: set[str] = set()
    misordered = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            rows += 1
            by_aspect[rec["aspect"]] = by_aspect.get(rec["aspect"], 0) + 1
            labels[rec["label_0"]] = labels.get(rec["label_0"], 0) + 1
            pair_ids.add(rec["pair_id"])
            misordered += not rec["image_id_0"] < rec["image_id_1"]
    problems = []
    expected = prompts * PAIRS_PER_PROMPT * len(ASPECT_ROWS)
    if rows != expected:
        problems.append(
            f"{rows} rows, expected {prompts} x {PAIRS_PER_PROMPT} x {len(ASPECT_ROWS)} = {expected}"
        )
    wanted = dict.fromkeys(ASPECT_ROWS, prompts * PAIRS_PER_PROMPT)
    if by_aspect != wanted:
        problems.append(f"rows per aspect {by_aspect}, expected {wanted}")
    if not set(labels) <= {0.0, 0.5, 1.0}:
        problems.append(f"labels outside {{0, 0.5, 1}}: {sorted(set(labels) - {0.0, 0.5, 1.0})}")
    if len(pair_ids) != rows:
        problems.append(f"{rows - len(pair_ids)} duplicate pair ids")
    if misordered:
        problems.append(f"{misordered} pairs with image_id_0 >= image_id_1")
    return {
        "rows": rows,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "bytes": path.stat().st_size,
        "problems": problems,
        "package": package_file(),
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
        "--seed",
        str(args.seed),
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
        raise SystemExit(f"{role} child for {n} images failed with exit code {proc.returncode}")
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    return json.loads(lines[-1][len(RESULT_TAG) :]), rusage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup is not None or args.measure is not None or args.check is not None:
        return _child(args)
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="vp-bench-pairs-")) if own_work else args.work.resolve()
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
    elif args.measure is not None:
        result = child_measure(args, size_dir)
    else:
        result = child_check(args, size_dir)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


def _bench(args: argparse.Namespace, work: Path) -> int:
    print(
        f"setup: {' and '.join(map(str, args.sizes))} images; N/{PER_PROMPT} prompts x {len(GENERATORS)} "
        f"generators x {len(GUIDANCE_SCALES)} guidance scales; annotate backend judge (group = a prompt's "
        f"{PER_PROMPT} images, 4 aspects, ~{EXPLANATION_CHARS}-character explanations, seed {args.seed}); "
        f"pairs mode all ({PAIRS_PER_PROMPT} pairs x {len(ASPECT_ROWS)} aspects per prompt)"
    )
    print(
        "measure: each size builds its run directory in one subprocess and runs the pairs stage in a fresh "
        "one; peak RSS = ru_maxrss of the pairs process (os.wait4): interpreter + imports + stage"
    )
    peaks: dict[int, int] = {}
    for n in args.sizes:
        size_dir = work / f"images-{n}"
        shutil.rmtree(size_dir, ignore_errors=True)
        made, _ = spawn(args, "setup", n, size_dir)
        res, peak = spawn(args, "measure", n, size_dir)
        chk, _ = spawn(args, "check", n, size_dir)
        peaks[n] = peak
        base = res["rss_after_imports"]
        packages = sorted({made["package"], res["package"], chk["package"]})
        print(f"{n:>6} images: visionprefer imported from {', '.join(packages)}")
        print(
            f"        pairs stage {res['seconds']:.1f} s ({res['pairs']} pairs, {res['ties']} ties), "
            f"peak RSS {mb(peak)} MB, pairs.jsonl {mb(chk['bytes'])} MB "
            f"[setup {made['seconds']:.1f} s: {made['prompts']} prompts, {made['groups']} judge records "
            f"({made['inconsistent']} rank-inconsistent), annotate log {mb(made['annotate_bytes'])} MB, "
            f"generate log {mb(made['generate_bytes'])} MB]"
        )
        print(
            f"        memory: after imports {mb(base)} MB (import peak {mb(res['import_peak'])} MB); "
            f"the stage adds {mb(peak - base)} MB at its peak"
        )
        prev_hwm = res["marks"][0][2]
        for label, rss, hwm in res["marks"][1:]:
            rise = (
                f", VmHWM +{mb(hwm - prev_hwm)} MB since the previous mark"
                if hwm - prev_hwm >= 2**20 / 20
                else ""
            )
            print(f"          {label:<36} RSS {mb(rss):>7} MB, VmHWM {mb(hwm):>7} MB{rise}")
            prev_hwm = max(prev_hwm, hwm)
        problems = list(chk["problems"])
        if res["pairs"] != chk["rows"]:
            problems.append(f"the stage reported {res['pairs']} pairs, the file holds {chk['rows']}")
        status = "OK" if not problems else "FAILED: " + "; ".join(problems)
        print(
            f"        check: {chk['rows']} rows = {made['prompts']} prompts x {PAIRS_PER_PROMPT} pairs x "
            f"{len(ASPECT_ROWS)} aspects, labels {chk['labels']}: {status}"
        )
        if problems:
            return 1
        shutil.rmtree(size_dir, ignore_errors=True)
    small, large = min(args.sizes), max(args.sizes)
    for n in args.sizes:
        print(f"peak RSS at {n} images: {mb(peaks[n])} MB")
    if large > small:
        print(f"bytes per image beyond the small run: {(peaks[large] - peaks[small]) / (large - small):.0f}")
    label = f"{large // 1000}k/{small // 1000}k" if small >= 1000 else f"{large}/{small}"
    print(f"peak RSS {label}: {peaks[large] / peaks[small]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
