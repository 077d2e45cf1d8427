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
generation record the generate stage would write (``visionprefer.generate.stage.generation_record``) to
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
be confirmed (the setup uses the checkout's ``generation_record``: versions from before it cannot be
run). The subprocesses, the memory marks and the synthetic run directory (prompts, image files,
generation records) are helpers shared with ``bench_publish.py`` (``benchmarks/_common.py``).

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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers
from _common import GENERATORS, Children, MemoryMarks, link_generated_images, mb, run_config, start_run  # noqa: E402

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
CHILDREN = Children(__file__, measured="measure", unit="images", forward=("seed",))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4000, 40000], help="images per run")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic judge scores")
    CHILDREN.add_options(p)
    args = p.parse_args(argv)
    if any(n < PER_PROMPT or n % PER_PROMPT for n in args.sizes):
        p.error(f"--sizes: each size must be a positive multiple of {PER_PROMPT}")
    return args


# --------------------------------------------------------------------------------------------- helpers
def make_config(size_dir: Path):
    annotate = {
        "backend": "judge",
        "judge": {"llm": {"model": JUDGE_MODEL, "base_url": "http://127.0.0.1:9/v1"}},
    }
    return run_config(size_dir, guidance_scales=GUIDANCE_SCALES, annotate=annotate, origin="bench_pairs")


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
    n = args.setup
    t0 = time.perf_counter()
    config, run, lines = start_run(size_dir, n // PER_PROMPT, make_config)
    chunks = link_generated_images(config, run, side=IMAGE_SIDE, distinct=DISTINCT_PNGS)
    images = sum(len(c.tasks) for c in chunks)
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
    import visionprefer.annotate.judge  # noqa: F401  (imported by the stage; in the baseline)
    import visionprefer.annotate.stage as annotate_mod
    import visionprefer.generate.stage as generate_mod
    import visionprefer.pairs.stage as pairs_mod
    from visionprefer.build import run_stage

    config = make_config(size_dir)
    memory = MemoryMarks()
    # The stage imports load_feedback and the generation helpers inside its body (module attributes, so
    # the wrappers are seen); derive_pairs and write_jsonl are globals of visionprefer.pairs.stage.
    memory.watch(annotate_mod, "load_feedback")
    memory.watch(generate_mod, "generation_index")  # current versions
    memory.watch(generate_mod, "generation_state")  # older ones (and generation_index's callers, if any)
    memory.watch(pairs_mod, "derive_pairs")  # a generator now: the work happens as it is consumed
    memory.watch(pairs_mod, "write_jsonl")

    t0 = time.perf_counter()
    report = run_stage(config, "pairs", progress=False)
    seconds = time.perf_counter() - t0
    memory.mark("pairs end")
    return {
        "seconds": seconds,
        "pairs": report.pairs,
        "ties": report.ties,
        "by_aspect": report.by_aspect,
        **memory.result(),
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
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return CHILDREN.main(
        args, "vp-bench-pairs-", _bench, setup=child_setup, measure=child_measure, check=child_check
    )


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
    peaks = CHILDREN.run_sizes(args, work, report)
    if peaks is None:
        return 1
    small, large = min(args.sizes), max(args.sizes)
    for n in args.sizes:
        print(f"peak RSS at {n} images: {mb(peaks[n])} MB")
    if large > small:
        print(f"bytes per image beyond the small run: {(peaks[large] - peaks[small]) / (large - small):.0f}")
    print(CHILDREN.peak_ratio_line(peaks))
    return 0


def report(n: int, made: dict, res: dict, peak: int, chk: dict) -> bool:
    """Print one size's results; True when its checks passed."""
    packages = sorted({made["package"], res["package"], chk["package"]})
    print(f"{n:>6} images: visionprefer imported from {', '.join(packages)}")
    print(
        f"        pairs stage {res['seconds']:.1f} s ({res['pairs']} pairs, {res['ties']} ties), "
        f"peak RSS {mb(peak)} MB, pairs.jsonl {mb(chk['bytes'])} MB "
        f"[setup {made['seconds']:.1f} s: {made['prompts']} prompts, {made['groups']} judge records "
        f"({made['inconsistent']} rank-inconsistent), annotate log {mb(made['annotate_bytes'])} MB, "
        f"generate log {mb(made['generate_bytes'])} MB]"
    )
    print(CHILDREN.memory_line(res, peak, "the stage"))
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
    return not problems


if __name__ == "__main__":
    sys.exit(main())
