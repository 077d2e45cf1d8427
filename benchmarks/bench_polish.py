"""Polishing benchmark: the prompts stage with LLM polishing against a slow OpenAI-compatible server.

What is measured
----------------
``visionprefer.testing.FakeOpenAIServer`` (a scripted OpenAI-compatible server in a subprocess on
127.0.0.1, responder ``polish``) answers every chat completion a fixed server-side latency after it
arrived (``--latency``, default 100 ms, the server's own work included). With ``--concurrency`` requests in
flight (default 16), no client can do better than ``concurrency / latency`` requests per second (160 req/s
with the defaults): that is the ideal.

* **measured arm**: ``visionprefer.build.run_stage(config, "prompts", progress=False)``, the real stage
  with ``prompts.polish.enabled: true`` and ``prompts.polish.llm: {model: gpt-4o-mini, base_url: <server>,
  concurrency: 16}``, on ``--requests`` (default 400) distinct prompts read from a text file, into a fresh
  run directory (an empty response cache, so every prompt costs exactly one request). The timer spans the
  whole ``run_stage`` call: opening the run directory, reading and cleaning the prompts, the LLM client
  (response cache, usage log, ``AsyncOpenAI``), every request, validation, and writing ``prompts.jsonl``.
  The time inside ``polish_and_check`` alone is printed as well (a timing wrapper around the unmodified
  function; the package code itself is not changed).
* **sequential baseline**: the same stage, the same kind of requests, with ``concurrency: 1`` and fewer
  prompts (``--baseline-requests``, default 40; at 100 ms each a full 400 would take over 40 s and tell
  nothing more). Printed as requests/s above the last line.

After each run the benchmark checks that the server saw exactly one request per prompt (distinct request
bodies, no retries), that the usage log records one successful attempt per prompt (nothing came from the
cache), and that every kept prompt carries the polishing model and the polished text. An untimed warm-up
run comes first (imports, first connections). The measured arm runs ``--repeats`` times (default 3), each
into a fresh run directory; the best and the median are printed.

Diagnostics (printed, not part of the ratio):

* **probe**: the same stage at concurrency 1 against a second server with zero latency; the time between
  consecutive request arrivals at that server is what one request costs beyond the server's latency
  (client work, HTTP round trip, server work). A healthy localhost round trip is a few ms; ~40 ms means
  a Nagle / delayed-ACK stall on a kept-alive connection.
* per measured run: this process's CPU time per request, and the server-side arrival rate from the first
  to the last request (the steady state, without start-up and the last request's latency). "fixed cost"
  is the best run's stage time minus that arrival window minus one latency (start-up and wind-down).

The last line is ``achieved/ideal throughput: X.XX``: the measured arm's best requests/s divided by
``concurrency / latency`` (the target is >= 0.9).

Run (from the repository root, about 25 s with the defaults)::

    .venv/bin/python benchmarks/bench_polish.py
    .venv/bin/python benchmarks/bench_polish.py --requests 400 --concurrency 16 --latency 0.1 --repeats 3
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

MODEL = "gpt-4o-mini"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400, help="prompts (= requests) per measured run")
    p.add_argument("--concurrency", type=int, default=16, help="prompts.polish.llm.concurrency")
    p.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    p.add_argument("--baseline-requests", type=int, default=40, help="prompts for the concurrency-1 run")
    p.add_argument("--repeats", type=int, default=3, help="measured runs (each into a fresh run dir)")
    p.add_argument("--probe-requests", type=int, default=20, help="requests for the zero-latency probe")
    add_work_option(p, "prompts and runs")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------- helpers
def make_config(work: Path, prompts_file: Path, run_dir: Path, base_url: str, concurrency: int):
    from visionprefer.config import config_from_dict

    data = {
        "run_dir": str(run_dir),
        "prompts": {
            "sources": [{"path": str(prompts_file)}],
            "polish": {
                "enabled": True,
                "llm": {"model": MODEL, "base_url": base_url, "concurrency": concurrency},
            },
        },
        # Required by the config; the generate stage is never run here.
        "generate": {"generators": [{"preset": "tiny-sd15"}]},
    }
    return config_from_dict(data, base_dir=str(work), origin="bench_polish")


class PolishTimer:
    """Times ``visionprefer.prompts.polish.polish_and_check`` without changing it (a pass-through wrapper)."""

    def __init__(self) -> None:
        import visionprefer.prompts.polish as polish

        self.module = polish
        self.original = polish.polish_and_check
        self.seconds = 0.0

    def __enter__(self) -> PolishTimer:
        original = self.original

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds = time.perf_counter() - t0

        self.module.polish_and_check = timed
        return self

    def __exit__(self, *exc) -> None:
        self.module.polish_and_check = self.original


@dataclass
class ArmResult:
    seconds: float  # the whole run_stage call
    polish_seconds: float  # inside polish_and_check
    cpu_seconds: float  # this process's CPU time during the run
    arrivals_seconds: float  # first to last request arrival at the server

    def rate(self, n: int) -> float:
        return n / self.seconds


def run_arm(server, work: Path, name: str, n: int, concurrency: int) -> ArmResult:
    """One stage run over ``n`` fresh prompts, checked (see the module docstring)."""
    from visionprefer.build import run_stage
    from visionprefer.rundir import read_jsonl

    prompts_file = work / f"{name}.txt"
    write_prompts(prompts_file, n, infix=f",  {name} ")  # safe, non-chatty, distinct across runs
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # fresh: an empty response cache
    config = make_config(work, prompts_file, run_dir, server.base_url, concurrency)
    seen_before = len(server.requests())
    with PolishTimer() as timer:
        c0, t0 = time.process_time(), time.perf_counter()
        result = run_stage(config, "prompts", progress=False)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0

    # Checks: every prompt polished by exactly one request that reached the server; nothing cached.
    logged = server.requests()[seen_before:]
    problems = []
    if len(logged) != n or len({r["key"] for r in logged}) != n:
        problems.append(f"server saw {len(logged)} requests ({len({r['key'] for r in logged})} distinct)")
    if any(r["attempt"] != 1 or r["fault"] for r in logged):
        problems.append("retried or faulted requests")
    usage = list(read_jsonl(run_dir / "llm" / "usage-rank0.jsonl"))
    if len(usage) != n or any(u.get("outcome") != "ok" for u in usage):
        problems.append(f"usage log has {len(usage)} records, expected {n} successful attempts")
    kept = result.kept
    polished = [  # the fake polisher capitalises and adds a full stop; the inputs have neither
        r
        for r in kept
        if r.get("polish_model") == MODEL and r["prompt"][:1].isupper() and r["prompt"].endswith(".")
    ]
    if len(kept) != n or len(polished) != n or result.rejected:
        problems.append(f"{len(polished)}/{n} prompts polished, {len(result.rejected)} rejected")
    if problems:
        raise SystemExit(f"{name}: run not as expected: {'; '.join(problems)}")
    shutil.rmtree(run_dir, ignore_errors=True)
    arrivals = sorted(r["t"] for r in logged)
    return ArmResult(total, timer.seconds, cpu, arrivals[-1] - arrivals[0])


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.work, "vp-bench-polish-", drop_api_key=True) as work:
        return _bench(args, work)


def _bench(args: argparse.Namespace, work: Path) -> int:
    from visionprefer.testing import FakeOpenAIServer

    quiet_logs(warnings_too=False)
    n, conc, lat = args.requests, args.concurrency, args.latency
    ideal = conc / lat

    # Probe: the same stage, sequential, against a zero-latency server: the fixed cost of one request.
    with FakeOpenAIServer(responder="polish", latency=0.0, max_seconds=120, folder=work / "probe") as probe:
        run_arm(probe, work, "probe-warmup", 4, 1)
        p = run_arm(probe, work, "probe", args.probe_requests, 1)
    gap = p.arrivals_seconds / (args.probe_requests - 1)
    print(
        f"probe: zero-latency server, concurrency 1: {gap * 1000:.1f} ms between request arrivals "
        f"(one request's round trip through the stage; every request at latency {lat * 1000:.0f} ms pays "
        "it on top)"
    )

    with FakeOpenAIServer(responder="polish", latency=lat, max_seconds=300, folder=work / "server") as server:
        print(
            f"setup: fake OpenAI server at {server.base_url}, latency {lat * 1000:.0f} ms; {n} prompts per "
            f"measured run, concurrency {conc}, model {MODEL}"
        )
        print("timing: the whole run_stage(config, 'prompts') call; fresh run dir (empty cache) per run")
        run_arm(server, work, "warmup", conc, conc)  # untimed: imports, first connections

        base = run_arm(server, work, "baseline", args.baseline_requests, 1)
        print(
            f"  sequential: {args.baseline_requests} requests in {base.seconds:.2f} s = "
            f"{base.rate(args.baseline_requests):.2f} req/s"
        )
        runs: list[ArmResult] = []
        for r in range(args.repeats):
            a = run_arm(server, work, f"run{r}", n, conc)
            runs.append(a)
            print(
                f"  run {r + 1}: {n} requests in {a.seconds:.2f} s = {a.rate(n):.1f} req/s; "
                f"polish_and_check {a.polish_seconds:.2f} s; client CPU {a.cpu_seconds / n * 1000:.2f} ms/request; "
                f"server arrivals {(n - 1) / a.arrivals_seconds:.1f} req/s (first to last)"
            )
        print(f"check: every run sent exactly one request per prompt; all {n} polished, none from the cache")

    best = min(runs, key=lambda a: a.seconds)
    med = statistics.median(a.seconds for a in runs)
    overhead = best.seconds - best.arrivals_seconds - lat
    print(f"ideal: {conc} in flight / {lat:g} s = {ideal:.0f} req/s (sequential: {1 / lat:.0f} req/s)")
    print(
        f"fixed cost of the best run: {overhead * 1000:.0f} ms outside the request stream "
        f"(stage time - first-to-last arrival - one latency)"
    )
    print(f"concurrency {conc}: best {best.rate(n):.1f} req/s, median {n / med:.1f} req/s")
    print(f"achieved/ideal throughput (median run): {n / med / ideal:.2f}")
    print(
        f"sequential baseline (concurrency 1): {base.rate(args.baseline_requests):.2f} req/s; "
        f"speed-up at concurrency {conc}: {best.rate(n) / base.rate(args.baseline_requests):.1f}x"
    )
    print(f"achieved/ideal throughput: {best.rate(n) / ideal:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
