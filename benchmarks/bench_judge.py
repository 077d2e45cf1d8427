"""Judge benchmark: the annotate stage (VLM judge) against a slow, rate-limited OpenAI-compatible server.

What is measured
----------------
``visionprefer.testing.FakeOpenAIServer`` (a scripted OpenAI-compatible server in a subprocess on
127.0.0.1, responder ``judge``) answers every chat completion a fixed server-side latency after it
arrived (``--latency``, default 100 ms, the server's own work included). The judge's LLM config allows
``--concurrency`` requests in flight (default 16) and ``--rpm`` requests per minute (default 6,000). No client can do better than
``min(concurrency / latency, rpm / 60)`` requests per second (min(160, 100) = 100 req/s with the
defaults): that is the ideal.

Setup (untimed, once): a run directory with the prompts and generate stages done by the tiny random-weight
``tiny-sd15`` generator: ``--prompts`` (default 200) prompts x ``--images-per-prompt`` (default 5) images of
64x64 px. The annotate config has ``group_size: 1`` and ``image_max_side: 64``, so every image is one judge
call (1,000 calls with the defaults).

* **measured arm**: ``visionprefer.build.run_stage(config, "annotate", progress=False)``, the real stage
  with ``annotate.backend: judge`` and ``annotate.judge.llm: {base_url: <server>, concurrency: 16,
  requests_per_minute: 6000}``. Before each run the annotation state is made fresh: ``<run>/annotate``
  and ``<run>/llm`` (annotation logs, response cache, usage log) are deleted and the in-process cache of
  encoded images (``judge.image_data_url``) is cleared, as in a new process, so every group costs one
  request and every image is read, resized and base64-encoded again. The timer spans the whole
  ``run_stage`` call: reopening the run directory, planning the groups (plan, generation state), the LLM
  client, building every request (in worker threads), the token bucket, every request, validation,
  ``rank_issues`` and the log appends.
* **no-RPM reference**: the same, without ``requests_per_minute`` (ideal ``concurrency / latency``,
  160 req/s): shows what the stage does when only concurrency binds.
* **capacity probe**: the same stage with no RPM limit against a second server with zero latency: the
  client's own ceiling (event-loop CPU per request, the local HTTP round trip, the server). It must be
  well above the ideal for the ratio to reach it. Its first run is the untimed warm-up (imports, first
  connections).

After each run the benchmark checks that the server saw exactly one request per group (distinct bodies, no
faults), that the usage log records one successful first attempt per group (no retries, nothing came from
the cache), and that every group is annotated (done, none failed, each record with a score per aspect).

Printed per measured run: requests/s of the whole call, this process's CPU time per request, the server
arrival rate from the first to the last request and over the second half of the requests (past the token
bucket's initial burst: it starts full with one second's worth of requests, so a run of a few seconds beats
``rpm / 60`` overall while staying far below ``rpm`` requests in any minute), the most arrivals in any
1-second window, the start-up (stage start to first arrival) and the tail (last arrival + one latency to
the stage's end). The measured arm runs ``--repeats`` times (default 3); best and median are printed.

The last line is ``achieved/ideal throughput: X.XX``: the measured arm's best requests/s divided by
``min(concurrency / latency, rpm / 60)`` (the target is >= 0.9).

Run (from the repository root, about 65 s with the defaults, a quarter of it the image set-up)::

    .venv/bin/python benchmarks/bench_judge.py
    .venv/bin/python benchmarks/bench_judge.py --prompts 200 --images-per-prompt 5 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers
from _common import add_work_option, quiet_logs, workspace, write_prompts  # noqa: E402

MODEL = "gpt-4o-2024-08-06"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=200, help="prompts in the run")
    p.add_argument("--images-per-prompt", type=int, default=5, help="tiny-sd15 images per prompt")
    p.add_argument("--concurrency", type=int, default=16, help="annotate.judge.llm.concurrency")
    p.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    p.add_argument("--rpm", type=float, default=6000, help="annotate.judge.llm.requests_per_minute")
    p.add_argument("--repeats", type=int, default=3, help="measured runs (each on a fresh annotation state)")
    add_work_option(p, "models and the run")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------- helpers
def make_config(work: Path, base_url: str, concurrency: int, rpm: float | None, args: argparse.Namespace):
    from visionprefer.config import config_from_dict

    llm = {"model": MODEL, "base_url": base_url, "concurrency": concurrency}
    if rpm:
        llm["requests_per_minute"] = rpm
    data = {
        "run_dir": str(work / "run"),
        "prompts": {"sources": [{"path": str(work / "prompts.txt")}]},
        "generate": {
            "generators": [{"preset": "tiny-sd15"}],
            "images_per_prompt": args.images_per_prompt,
            "batch_size": 16,
        },
        "annotate": {
            "backend": "judge",
            "judge": {"group_size": 1, "image_max_side": 64, "llm": llm},
        },
    }
    return config_from_dict(data, base_dir=str(work), origin="bench_judge")


def build_images(work: Path, args: argparse.Namespace) -> int:
    """Prompts and tiny images (untimed); returns the number of images (= judge calls per run)."""
    import torch

    from visionprefer.build import run_stage

    torch.set_num_threads(1)
    write_prompts(work / "prompts.txt", args.prompts)
    config = make_config(work, "http://127.0.0.1:9/v1", args.concurrency, args.rpm, args)
    kept = run_stage(config, "prompts", progress=False).kept
    report = run_stage(config, "generate", progress=False)
    expected = len(kept) * args.images_per_prompt
    if len(kept) != args.prompts or report.made + report.done_before != expected or report.failed:
        raise SystemExit(f"setup: {len(kept)} prompts kept, generate report {report}")
    return expected


@dataclass
class ArmResult:
    seconds: float  # the whole run_stage call
    cpu_seconds: float  # this process's CPU time during the run
    arrivals_seconds: float  # first to last request arrival at the server
    startup_seconds: float  # stage start to the first arrival
    tail_seconds: float  # last arrival + latency to the stage's end
    steady_rate: float  # arrivals per second over the second half of the run (past the bucket's burst)
    peak_second: int  # most arrivals in any 1-second window

    def rate(self, n: int) -> float:
        return n / self.seconds


def run_arm(server, work: Path, name: str, n: int, concurrency: int, rpm: float | None, args, latency):
    """One annotate run over all ``n`` groups on a fresh annotation state, checked (see the docstring)."""
    from visionprefer.annotate.judge import image_data_url
    from visionprefer.build import run_stage
    from visionprefer.config import ASPECTS
    from visionprefer.rundir import RunDir, read_jsonl

    run_dir = work / "run"
    shutil.rmtree(run_dir / "annotate", ignore_errors=True)
    shutil.rmtree(run_dir / "llm", ignore_errors=True)
    image_data_url.cache_clear()  # as in a fresh process: every image is encoded again
    config = make_config(work, server.base_url, concurrency, rpm, args)
    seen_before = len(server.requests())
    w0, c0, t0 = time.time(), time.process_time(), time.perf_counter()
    report = run_stage(config, "annotate", progress=False)
    total, cpu, w1 = time.perf_counter() - t0, time.process_time() - c0, time.time()

    logged = server.requests()[seen_before:]
    problems = []
    if len(logged) != n or len({r["key"] for r in logged}) != n:
        problems.append(f"server saw {len(logged)} requests ({len({r['key'] for r in logged})} distinct)")
    if any(r["fault"] for r in logged):
        problems.append("faulted requests")
    # The server counts a body's attempts over its whole life (earlier runs send the same bodies), so
    # first attempts are checked in this run's usage log.
    usage = list(read_jsonl(run_dir / "llm" / "usage-rank0.jsonl"))
    if len(usage) != n or any(u.get("outcome") != "ok" or u.get("attempt") != 1 for u in usage):
        problems.append(f"usage log has {len(usage)} records, expected {n} successful attempts")
    state = RunDir(run_dir).stage_log("annotate", "annotation_id").state()
    complete = [
        r
        for r in state.done.values()
        if r.get("judge") == MODEL
        and len(r["results"]) == 1
        and all(a in res for res in r["results"].values() for a in ASPECTS)
    ]
    if report.planned != n or report.made != n or report.failed or len(complete) != n or state.failed:
        problems.append(
            f"planned {report.planned}, made {report.made}, failed {report.failed}; "
            f"{len(complete)}/{n} complete annotations, {len(state.failed)} failure records"
        )
    if problems:
        raise SystemExit(f"{name}: run not as expected: {'; '.join(problems)}")
    arrivals = sorted(r["t"] for r in logged)
    later = arrivals[len(arrivals) // 2 :]
    steady = (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 else float("nan")
    peak, j = 0, 0
    for i, t in enumerate(arrivals):  # sliding window [t - 1 s, t]
        while arrivals[j] < t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    return ArmResult(
        total,
        cpu,
        arrivals[-1] - arrivals[0],
        arrivals[0] - w0,
        w1 - arrivals[-1] - latency,
        steady,
        peak,
    )


def describe(r: ArmResult, n: int) -> str:
    return (
        f"{n} requests in {r.seconds:.2f} s = {r.rate(n):.1f} req/s; client CPU "
        f"{r.cpu_seconds / n * 1000:.2f} ms/request; server arrivals {(n - 1) / r.arrivals_seconds:.1f} req/s "
        f"(first to last), {r.steady_rate:.1f} req/s over the second half, peak {r.peak_second} in 1 s; "
        f"start-up {r.startup_seconds * 1000:.0f} ms, tail {r.tail_seconds * 1000:.0f} ms"
    )


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(
        args.work,
        "vp-bench-judge-",
        drop_api_key=True,
        VISIONPREFER_TINY_DIR="{work}/tiny-models",
        VISIONPREFER_CACHE="{work}/hf-home/visionprefer",
        OMP_NUM_THREADS="1",
    ) as work:
        return _bench(args, work)


def _bench(args: argparse.Namespace, work: Path) -> int:
    from visionprefer.testing import FakeOpenAIServer

    quiet_logs(warnings_too=False)
    conc, lat, rpm = args.concurrency, args.latency, args.rpm
    ideal = min(conc / lat, rpm / 60.0)

    t0 = time.perf_counter()
    n = build_images(work, args)
    print(
        f"setup: {args.prompts} prompts x {args.images_per_prompt} tiny-sd15 images (64x64) in "
        f"{time.perf_counter() - t0:.1f} s; group_size 1, image_max_side 64: {n} judge calls per run"
    )

    # Capacity: no latency, no RPM limit: what the client itself can do (the first run warms up).
    with FakeOpenAIServer(responder="judge", latency=0.0, max_seconds=300, folder=work / "probe") as probe:
        run_arm(probe, work, "warmup", n, conc, None, args, 0.0)
        cap = run_arm(probe, work, "capacity", n, conc, None, args, 0.0)
    print(f"capacity probe (zero-latency server, concurrency {conc}, no RPM limit): {describe(cap, n)}")

    with FakeOpenAIServer(responder="judge", latency=lat, max_seconds=600, folder=work / "server") as server:
        print(
            f"setup: fake OpenAI server at {server.base_url}, latency {lat * 1000:.0f} ms; concurrency "
            f"{conc}, requests_per_minute {rpm:g}, model {MODEL}"
        )
        print(
            "timing: the whole run_stage(config, 'annotate') call; fresh annotate/ and llm/ folders and a "
            "cleared image-encoding cache per run"
        )
        free = run_arm(server, work, "no-rpm", n, conc, None, args, lat)
        print(f"  no RPM limit (ideal {conc / lat:.0f} req/s): {describe(free, n)}")
        runs: list[ArmResult] = []
        for r in range(args.repeats):
            a = run_arm(server, work, f"run{r}", n, conc, rpm, args, lat)
            runs.append(a)
            print(f"  run {r + 1}: {describe(a, n)}")
        print(
            f"check: every run sent exactly one request per group; all {n} groups annotated, none failed, "
            "none from the cache"
        )

    best = min(runs, key=lambda a: a.seconds)
    med = statistics.median(a.seconds for a in runs)
    print(
        f"ideal: min({conc} in flight / {lat:g} s = {conc / lat:.0f}, {rpm:g} RPM / 60 = {rpm / 60:.0f}) "
        f"= {ideal:.0f} req/s"
    )
    print(
        f"no RPM limit: {free.rate(n):.1f} req/s = {free.rate(n) / (conc / lat):.2f} of its ideal "
        f"{conc / lat:.0f} req/s"
    )
    print(
        f"RPM-limited: best {best.rate(n):.1f} req/s, median {n / med:.1f} req/s; second half of the arrivals "
        f"{statistics.median(a.steady_rate for a in runs):.1f} req/s (median). The bucket starts full (one "
        f"second's worth, {rpm / 60:.0f} requests), so a {n}-request run may beat rpm/60 overall while "
        f"never exceeding {rpm:g} requests in any minute"
    )
    print(f"achieved/ideal throughput (median run): {n / med / ideal:.2f}")
    print(f"achieved/ideal throughput: {best.rate(n) / ideal:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
