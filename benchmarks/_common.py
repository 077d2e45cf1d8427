"""Helpers shared by the benchmark scripts (not a benchmark itself).

* For every script: the prompt word list and the prompts file (``write_prompts``), the ``--work`` option
  and the work folder with the isolated, offline environment (``workspace``: a temporary folder, deleted
  at the end, unless ``--work`` names one), quieter logs.
* For the peak-memory benchmarks (``bench_publish.py``, ``bench_pairs.py``), which run each size in three
  fresh subprocesses of their own script (``--setup N``, the measured step, ``--check N``): ``Children``
  (the child options, the script's main in a child and in the parent, the spawning, where a child's peak
  RSS is ``ru_maxrss`` from ``os.wait4``, the loop over the sizes, the memory line and the last line); in
  the measured child, ``MemoryMarks`` (``VmRSS``/``VmHWM`` marks around package functions); in the setup
  child, ``run_config``, ``start_run`` (prompts through the real prompts stage) and
  ``link_generated_images`` (every planned image "generated": hard links to a few random PNGs and the
  records of ``visionprefer.generate.stage.generation_record``).

The scripts are run as ``.venv/bin/python benchmarks/bench_X.py`` from the repository root and import this
module from their own folder.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Varied, safe, non-chatty prompts: different lengths (so that tokenisation is not trivially identical
# across a batch), none starting like a chat reply, none mentioning an unsafe word.
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
GENERATORS = ("tiny-sd15", "tiny-sd21")  # the peak-memory benchmarks' generator presets
RESULT_TAG = "RESULT "  # a child's result: this tag and one JSON object, on its last such line


# --------------------------------------------------------------------------------------------- every script
def write_prompts(path: Path, n: int, infix: str = ", ") -> list[str]:
    """``n`` distinct prompts (``<words><infix>variation <i>``), one a line; returns them."""
    lines = [f"{WORDS[i % len(WORDS)]}{infix}variation {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def add_work_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--work", type=Path, default=None, help=f"keep {what} here (default: temp dir)")


@contextmanager
def workspace(
    work: Path | None, prefix: str, *, datasets_offline: bool = False, drop_api_key: bool = False, **env: str
) -> Iterator[Path]:
    """The work folder (``work``, or a temporary folder deleted at the end), with the environment set for
    the benchmark before the libraries are imported (subprocesses inherit it): offline, the Hugging Face
    caches in ``<work>/hf-home``, no hub progress bars, a single process (no ``WORLD_SIZE``); with
    ``datasets_offline`` also ``HF_DATASETS_OFFLINE``, with ``drop_api_key`` no ``OPENAI_API_KEY`` (a
    fake server needs none: never send a real key); ``env`` sets more variables (``{work}`` in a value
    is the work folder)."""
    own = work is None
    folder = Path(tempfile.mkdtemp(prefix=prefix)) if own else work.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if datasets_offline:
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(folder / "hf-home")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.update({k: v.format(work=folder) for k, v in env.items()})
    os.environ.pop("WORLD_SIZE", None)  # single process
    if drop_api_key:
        os.environ.pop("OPENAI_API_KEY", None)
    try:
        yield folder
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


def quiet_logs(*, warnings_too: bool = True) -> None:
    """Only warnings from the package's loggers (and no Python warnings unless ``warnings_too`` is off)."""
    logging.getLogger("visionprefer").setLevel(logging.WARNING)
    if warnings_too:
        warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------------------------- memory
def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux /proc)."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def own_peak() -> int:
    """This process's peak RSS so far in bytes (``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


class MemoryMarks:
    """A measured child's memory: its resident size when created (after the imports), its peak so far,
    and (label, VmRSS, VmHWM) marks, the first one "after imports"."""

    def __init__(self) -> None:
        base = proc_status()
        self.rss_after_imports = base["VmRSS"]
        self.import_peak = own_peak()
        self.marks: list[tuple[str, int, int]] = [("after imports", base["VmRSS"], base["VmHWM"])]

    def mark(self, label: str) -> None:
        s = proc_status()
        self.marks.append((label, s["VmRSS"], s["VmHWM"]))

    def watch(self, module: Any, name: str, label: Callable[..., str] | None = None) -> None:
        """Mark ``<label> start`` and ``<label> end`` around ``module.name`` (a thin wrapper, behaviour
        unchanged; ``label`` makes the label from the call's arguments, by default it is ``name``). A
        generator's work happens as it is consumed: its call is marked ``<label> returned a generator``
        and its end ``<label> exhausted``. Nothing happens when the module has no such function (not in
        this version of the package)."""
        fn = getattr(module, name, None)
        if fn is None:
            return

        def wrapper(*a, **kw):
            tag = name if label is None else label(*a, **kw)
            self.mark(f"{tag} start")
            result = fn(*a, **kw)
            if inspect.isgenerator(result):
                self.mark(f"{tag} returned a generator")
                return self._exhausted(result, tag)
            self.mark(f"{tag} end")
            return result

        setattr(module, name, wrapper)

    def _exhausted(self, gen: Iterator, tag: str) -> Iterator:
        try:
            yield from gen
        finally:
            self.mark(f"{tag} exhausted")

    def result(self) -> dict[str, Any]:
        """The memory fields of the child's RESULT record (``self_peak`` is the peak until now)."""
        return {
            "rss_after_imports": self.rss_after_imports,
            "import_peak": self.import_peak,
            "self_peak": own_peak(),
            "marks": self.marks,
        }


# --------------------------------------------------------------------------------------------- run directories
def run_config(size_dir: Path, *, guidance_scales: tuple[float, ...], annotate: dict, origin: str):
    """The config of a peak-memory run: prompts.txt in ``size_dir``, the run in ``size_dir/run``, the
    GENERATORS on the CPU, PNG images."""
    from visionprefer.config import config_from_dict

    data = {
        "run_dir": str(size_dir / "run"),
        "prompts": {"sources": [{"path": "prompts.txt"}]},
        "generate": {
            "generators": [{"preset": g} for g in GENERATORS],
            "guidance_scales": list(guidance_scales),
            "batch_size": 4,
            "image_format": "png",
            "device": "cpu",
        },
        "annotate": annotate,
    }
    return config_from_dict(data, base_dir=str(size_dir), origin=origin)


def start_run(size_dir: Path, prompts: int, make_config: Callable[[Path], Any]) -> tuple[Any, Any, list[str]]:
    """``prompts`` distinct prompts in ``size_dir/prompts.txt``, through the real prompts stage; returns
    (config, run, prompt lines)."""
    from visionprefer.build import open_run, run_stage

    size_dir.mkdir(parents=True, exist_ok=True)
    lines = write_prompts(size_dir / "prompts.txt", prompts)
    config = make_config(size_dir)
    run = open_run(config)
    run_stage(config, "prompts", progress=False, run=run)
    return config, run, lines


def link_generated_images(config: Any, run: Any, *, side: int, distinct: int) -> list:
    """Every planned image 'generated': ``images/<ab>/<image_id>.png`` hard-linked to one of ``distinct``
    random ``side`` x ``side`` PNGs (real, decodable files at little disk and time), and the generate
    stage's done record (``generation_record``) of each in ``generate/done-rank0.jsonl``. Returns the
    plan's chunks."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from visionprefer.generate.plan import plan_images, resolve_generators
    from visionprefer.generate.stage import KEY, STAGE, generation_record
    from visionprefer.prompts.stage import load_prompts

    rng = np.random.default_rng(0)
    sources: list[tuple[Path, str]] = []
    src_dir = run.root.parent / "png"
    src_dir.mkdir(exist_ok=True)
    for k in range(distinct):
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
            records.append(
                generation_record(
                    task,
                    spec,
                    pipeline="StableDiffusionPipeline",
                    scheduler="DDIMScheduler",
                    dtype="float32",
                    size=(side, side),
                    file=str(path.relative_to(run.root)),
                    fmt="png",
                    sha256=sha,
                    chunk=chunk.index,
                    rank=0,
                )
            )
            count += 1
        log.record_done(records)
    log.close()
    return chunks


# --------------------------------------------------------------------------------------------- subprocesses
ChildFn = Callable[[argparse.Namespace, Path], dict]


@dataclass(frozen=True)
class Children:
    """A peak-memory benchmark's subprocesses: each size N runs ``--setup N``, ``--<measured> N`` and
    ``--check N`` children of ``script``, each in a fresh process with ``--work <size folder>``, the
    options named in ``forward`` as the parent got them, and ``--sizes N``."""

    script: str  # the benchmark's __file__
    measured: str  # the measured child's option (without the dashes)
    unit: str  # what N counts, for messages
    forward: tuple[str, ...] = ()  # argparse destinations passed on to every child

    def add_options(self, p: argparse.ArgumentParser) -> None:
        """``--work`` and the children's options (hidden)."""
        add_work_option(p, "run directories")
        p.add_argument("--setup", type=int, default=None, help=argparse.SUPPRESS)  # child: build a run dir
        p.add_argument(f"--{self.measured}", type=int, default=None, help=argparse.SUPPRESS)  # child: measure
        p.add_argument("--check", type=int, default=None, help=argparse.SUPPRESS)  # child: read it back

    def role(self, args: argparse.Namespace) -> str | None:
        """The child role this process was started for, None in the parent."""
        roles = ("setup", self.measured, "check")
        return next((r for r in roles if getattr(args, r) is not None), None)

    def main(
        self,
        args: argparse.Namespace,
        prefix: str,
        bench: Callable[[argparse.Namespace, Path], int],
        *,
        setup: ChildFn,
        measure: ChildFn,
        check: ChildFn,
    ) -> int:
        """The script's main. In a child: its role's function on its size folder, then its RESULT record.
        In the parent: ``bench(args, work)`` in a ``workspace`` (``prefix``; offline, also for datasets),
        whose environment the children inherit."""
        role = self.role(args)
        if role is None:
            with workspace(args.work, prefix, datasets_offline=True) as work:
                return bench(args, work)
        quiet_logs()
        fn = {"setup": setup, self.measured: measure, "check": check}[role]
        result = fn(args, args.work.resolve())
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    def spawn(self, args: argparse.Namespace, role: str, n: int, size_dir: Path) -> tuple[dict, int]:
        """Run the script as a child; returns its RESULT record and its peak RSS (bytes) from os.wait4."""
        cmd = [sys.executable, os.path.abspath(self.script), f"--{role}", str(n), "--work", str(size_dir)]
        for dest in self.forward:
            cmd += [f"--{dest.replace('_', '-')}", str(getattr(args, dest))]
        cmd += ["--sizes", str(n)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            sys.stdout.write(stdout)
            raise SystemExit(f"{role} child for {n} {self.unit} failed with exit code {proc.returncode}")
        lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
        return json.loads(lines[-1][len(RESULT_TAG) :]), rusage.ru_maxrss * 1024

    def run_sizes(
        self,
        args: argparse.Namespace,
        work: Path,
        report: Callable[[int, dict, dict, int, dict], bool],
    ) -> dict[int, int] | None:
        """Every size of ``args.sizes`` in ``work/<unit>-N``: setup, measured and check children, then
        ``report(n, setup result, measured result, measured peak, check result)`` prints and says whether
        the checks passed. A size's folder is deleted once they passed; when they fail it is kept and
        None is returned. Otherwise returns the measured children's peaks by size."""
        peaks: dict[int, int] = {}
        for n in args.sizes:
            size_dir = work / f"{self.unit}-{n}"
            shutil.rmtree(size_dir, ignore_errors=True)
            made, _ = self.spawn(args, "setup", n, size_dir)
            res, peak = self.spawn(args, self.measured, n, size_dir)
            chk, _ = self.spawn(args, "check", n, size_dir)
            peaks[n] = peak
            if not report(n, made, res, peak, chk):
                return None
            shutil.rmtree(size_dir, ignore_errors=True)
        return peaks

    @staticmethod
    def memory_line(res: dict[str, Any], peak: int, step: str) -> str:
        """The line on a measured child's memory: its resident size after the imports, what ``step`` adds."""
        base = res["rss_after_imports"]
        return (
            f"        memory: after imports {mb(base)} MB (import peak {mb(res['import_peak'])} MB); "
            f"{step} adds {mb(peak - base)} MB at its peak"
        )

    @staticmethod
    def peak_ratio_line(peaks: dict[int, int]) -> str:
        """The last line: ``peak RSS 50k/5k: X.XX`` (the peak at the largest size ÷ at the smallest)."""
        small, large = min(peaks), max(peaks)
        label = f"{large // 1000}k/{small // 1000}k" if small >= 1000 else f"{large}/{small}"
        return f"peak RSS {label}: {peaks[large] / peaks[small]:.2f}"
