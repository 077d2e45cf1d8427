"""Crash safety (kill -9 mid-generation) and multi-process builds under torchrun on CPU."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from visionprefer.build import build, open_run
from visionprefer.config import load_config
from visionprefer.generate.plan import plan_images
from visionprefer.generate.stage import generation_state
from visionprefer.prompts.stage import load_prompts
from visionprefer.rundir import read_jsonl
from visionprefer.status import run_status

from .conftest import write_config

N_PROMPTS = 18


def _config(tmp_path: Path, run: str) -> Path:
    prompts = tmp_path / "prompts.txt"
    if not prompts.exists():
        prompts.write_text("".join(f"a photo of object number {i}\n" for i in range(N_PROMPTS)))
    return write_config(
        tmp_path,
        f"""\
        run_dir: {tmp_path / run}
        prompts:
          sources:
            - path: prompts.txt
        generate:
          generators:
            - {{preset: tiny-sd15, steps: 6}}
            - {{preset: tiny-sd21, steps: 6}}
          guidance_scales: [3.0, 7.5]
          batch_size: 4
        """,
        name=f"{run}.yaml",
    )


def _images(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "images").rglob("*.png"))}


def _done_lines(run_dir: Path) -> int:
    return sum(1 for p in (run_dir / "generate").glob("done-rank*.jsonl") for _ in read_jsonl(p))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start_and_kill(cfg: Path, run_dir: Path, after_records: int, extra_delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionprefer", "build", str(cfg), "-q"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while _done_lines(run_dir) < after_records:
            assert proc.poll() is None, f"build ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "generation did not start in time"
            time.sleep(0.005)
        time.sleep(extra_delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()


def test_kill_9_then_resume_is_byte_identical(tmp_path):
    reference_cfg = load_config(_config(tmp_path, "reference"))
    build(reference_cfg, progress=False)
    reference = _images(tmp_path / "reference")
    planned = N_PROMPTS * 2 * 2
    assert len(reference) == planned

    cfg_path = _config(tmp_path, "crashy")
    run_dir = tmp_path / "crashy"
    # Kill twice at different moments (mid-chunk and between chunks), resuming in between.
    _start_and_kill(cfg_path, run_dir, after_records=4, extra_delay=0.0)
    _start_and_kill(cfg_path, run_dir, after_records=_done_lines(run_dir) + 9, extra_delay=0.013)

    cfg = load_config(cfg_path)
    run = open_run(cfg)
    state = generation_state(run)
    assert 0 < len(state.done) < planned, "the kill must land mid-generation"
    for rec in state.done.values():  # nothing recorded as done is partial
        assert (run_dir / rec["file"]).read_bytes() == reference[Path(rec["file"]).name]
    chunks = plan_images(load_prompts(run), cfg.generate)
    incomplete = [c for c in chunks if any(i not in state.done for i in c.image_ids)]

    report = build(cfg, progress=False).stages["generate"]
    assert report.chunks_run == len(incomplete)
    assert report.made == planned - len(state.done)
    assert _images(run_dir) == reference
    assert not list(run_dir.rglob("*.tmp"))  # stale temporaries from the kill were swept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_cover_the_plan_once(tmp_path):
    pytest.importorskip("accelerate")
    reference_cfg = load_config(_config(tmp_path, "single"))
    build(reference_cfg, progress=False)
    reference = _images(tmp_path / "single")

    cfg_path = _config(tmp_path, "ranks")
    cmd = _torchrun("build", str(cfg_path), "-q")
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "ranks"
    per_rank = {
        p.name: [r["image_id"] for r in read_jsonl(p)]
        for p in (run_dir / "generate").glob("done-rank*.jsonl")
    }
    assert sorted(per_rank) == ["done-rank0.jsonl", "done-rank1.jsonl"]
    assert all(per_rank.values())  # both ranks worked
    all_ids = [i for ids in per_rank.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == len(reference)  # every planned image exactly once
    assert _images(run_dir) == reference


def _torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "visionprefer",
        *args,
    ]


def test_ranks_waiting_for_a_long_rank0_stage_use_the_configured_timeout(tmp_path, fake_llm):
    """Rank 1 waits at a barrier while rank 0 polishes (a single-writer stage): the wait is bounded by
    VISIONPREFER_DIST_TIMEOUT_S (default 72 h, not the process group's 10-30 min), and running out of it is
    one clear line."""
    pytest.importorskip("accelerate")
    server = fake_llm(responder="polish", latency=4.0)
    (tmp_path / "p.txt").write_text("a cat on a sofa\n")
    cfg = write_config(
        tmp_path,
        f"""\
        run_dir: {tmp_path / "run"}
        prompts:
          sources: [{{path: p.txt}}]
          polish: {{enabled: true, llm: {{base_url: "{server.base_url}", concurrency: 1, timeout_s: 30}}}}
        generate: {{generators: [{{preset: tiny-sd15}}]}}
        """,
    )
    env = {**_env(), "VISIONPREFER_DIST_TIMEOUT_S": "1.5"}
    done = subprocess.run(
        _torchrun("prompts", str(cfg), "-q"), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "visionprefer: error: rank 1: timed out waiting for the other ranks (limit 1.5 s" in done.stderr


def test_dist_timeout_setting(monkeypatch):
    from datetime import timedelta

    from visionprefer.dist import dist_timeout
    from visionprefer.errors import ConfigError

    monkeypatch.delenv("VISIONPREFER_DIST_TIMEOUT_S", raising=False)
    assert dist_timeout() == timedelta(hours=72)
    monkeypatch.setenv("VISIONPREFER_DIST_TIMEOUT_S", "90")
    assert dist_timeout() == timedelta(seconds=90)
    monkeypatch.setenv("VISIONPREFER_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="VISIONPREFER_DIST_TIMEOUT_S"):
        dist_timeout()


def _torchrun_build(
    tmp_path: Path, prompts: list[str], annotate: str, env: dict[str, str] | None = None
) -> None:
    """``visionprefer build`` under torchrun (2 ranks) of ``prompts`` through tiny-sd15 and tiny-sd21 with
    the given ``annotate`` section (YAML), into ``tmp_path/run``."""
    (tmp_path / "p.txt").write_text("".join(f"{p}\n" for p in prompts))
    cfg = write_config(
        tmp_path,
        f"run_dir: {tmp_path / 'run'}\n"
        "prompts: {sources: [{path: p.txt}]}\n"
        "generate: {generators: [{preset: tiny-sd15}, {preset: tiny-sd21}], batch_size: 4}\n"
        "annotate:\n" + textwrap.indent(textwrap.dedent(annotate).strip(), "  ") + "\n",
    )
    done = subprocess.run(
        _torchrun("build", str(cfg), "-q"), env=env or _env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_torchrun_judge_splits_the_groups_and_publishes_once(tmp_path, fake_llm):
    """The whole build under a launcher with the VLM judge: each rank judges its share of the groups (each
    group asked once in all), rank 0 derives the pairs and publishes."""
    pytest.importorskip("accelerate")
    server = fake_llm(responder="judge")
    # A fresh tiny-model folder: each rank builds the tiny model it needs first (transformers saves weights
    # only on rank 0 of a process group, so the factory builds outside it).
    _torchrun_build(
        tmp_path,
        [f"a photo of object number {i}" for i in range(6)],
        f"""
        backend: judge
        judge: {{image_max_side: 64, llm: {{base_url: "{server.base_url}", concurrency: 4}}}}
        """,
        env={**_env(), "VISIONPREFER_TINY_DIR": str(tmp_path / "tiny")},
    )
    assert len(list((tmp_path / "tiny").glob("tiny-sd*-v*"))) == 2
    per_rank = {
        p.name: [r["annotation_id"] for r in read_jsonl(p)]
        for p in (tmp_path / "run" / "annotate").glob("done-rank*.jsonl")
    }
    assert sorted(per_rank) == ["done-rank0.jsonl", "done-rank1.jsonl"] and all(per_rank.values())
    ids = [i for v in per_rank.values() for i in v]
    assert len(ids) == len(set(ids)) == 6
    asked = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(asked) == 6 and len({r["key"] for r in asked}) == 6
    st = run_status(tmp_path / "run")["stages"]
    # 6 prompts x 1 pair (two images each) x 5 aspects (four and overall)
    assert (st["annotate"]["done"], st["pairs"]["pairs"], st["publish"]["state"]) == (6, 6 * 1 * 5, "done")


def test_torchrun_metric_feedback_writes_each_prompts_questions_once(tmp_path, fake_llm):
    """Metric feedback with LLM-written questions under a launcher: a prompt's images stay on one rank, so
    its questions are asked (and paid for) once. (Chunks of 4 images: two prompts each, three chunks, so
    both ranks have some.)"""
    pytest.importorskip("accelerate")
    server = fake_llm(responder="metrics")
    llm = f"{{model: gpt-4o-mini, base_url: '{server.base_url}', concurrency: 2}}"
    _torchrun_build(
        tmp_path,
        [f"{n} red apples on a table" for n in range(2, 8)],
        f"""
        backend: metrics
        metrics: {{questions: llm, question_llm: {llm}, vqa_model: tiny-blip, clip_model: tiny-clip,
                   aesthetic_model: tiny-aesthetic, aesthetic_clip_model: tiny-clip, batch_size: 4}}
        """,
    )
    asked = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(asked) == len({r["key"] for r in asked}) == 6  # one question call per prompt
    per_rank = [list(read_jsonl(p)) for p in sorted((tmp_path / "run" / "annotate").glob("done-rank*.jsonl"))]
    assert len(per_rank) == 2 and all(per_rank)
    prompts_of = [{r["prompt_id"] for r in recs} for recs in per_rank]
    assert not (prompts_of[0] & prompts_of[1]) and sum(len(r) for r in per_rank) == 12


def test_torchrun_build_with_recorded_failures_exits_0_and_reports_the_launch_totals(tmp_path, capsys):
    """Per-item failures recorded by a launched build: exit 0 on every rank (no torchrun traceback), rank 0's
    summary counts the whole launch (both ranks' images), and --strict turns the failures into exit 1."""
    pytest.importorskip("accelerate")
    from visionprefer.cli import main

    (tmp_path / "p.txt").write_text("".join(f"a photo of object number {i}\n" for i in range(4)))
    cfg_path = write_config(
        tmp_path,
        f"run_dir: {tmp_path / 'run'}\n"
        "prompts: {sources: [{path: p.txt}]}\n"
        "generate: {generators: [{preset: tiny-sd15}, {preset: tiny-sd21}], guidance_scales: [3.0, 7.5],\n"
        "           batch_size: 2}\n"
        "annotate: {backend: metrics, metrics: {vqa_model: tiny-blip, clip_model: tiny-clip,\n"
        "           aesthetic_model: tiny-aesthetic, aesthetic_clip_model: tiny-clip}}\n",
    )
    cfg = load_config(cfg_path)
    run = open_run(cfg)
    from visionprefer.build import run_stage

    run_stage(cfg, "prompts", run=run)
    run_stage(cfg, "generate", run=run, progress=False)
    files = sorted((tmp_path / "run" / "images").rglob("*.png"))
    assert len(files) == 16
    files[0].write_bytes(b"not an image")  # recorded as made: annotating its batch fails (OSError)
    for f in files[1:]:
        f.unlink()  # made again, by both ranks

    done = subprocess.run(
        _torchrun("build", str(cfg_path)), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr
    out = done.stdout
    assert "generate: 15 made, 1 already done, 0 failed, 0 skipped (permanent failures) of 16 planned" in out
    annotated = re.search(r"annotate \(metrics\): (\d+) images annotated, 0 already done, (\d+) failed", out)
    assert annotated and int(annotated[1]) + int(annotated[2]) == 16 and int(annotated[2]) > 0, out
    assert f"recorded failures: {annotated[2]} items" in out
    assert out.count("annotate (metrics):") == 1  # rank 0 alone summarises

    capsys.readouterr()
    assert main(["annotate", str(cfg_path), "-q"]) == 0  # retried, failed again: recorded, exit 0
    assert main(["annotate", str(cfg_path), "-q", "--strict"]) == 1


def test_quickstart_publishes_byte_identical_parquet_under_one_and_two_processes(tmp_path):
    """Metric feedback is scored in fixed chunks of the plan (like generation), so the metrics quickstart built by
    one process and by two ranks publishes the same bytes in every config, floats included."""
    pytest.importorskip("accelerate")
    from visionprefer.resources import data_path

    quickstart = data_path("examples/quickstart_metrics.yaml")  # the metric-feedback quickstart
    build(load_config(quickstart, run_dir=str(tmp_path / "one")), progress=False)  # also builds tiny models
    done = subprocess.run(
        _torchrun("build", str(quickstart), "--out", str(tmp_path / "two"), "-q"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = {p.name for p in (tmp_path / "two" / "annotate").glob("done-rank*.jsonl")}
    assert ranks == {"done-rank0.jsonl", "done-rank1.jsonl"}  # both ranks scored

    def parquet(run: str) -> dict[str, bytes]:
        folder = tmp_path / run / "dataset"
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}

    one, two = parquet("one"), parquet("two")
    assert {k.split("/")[0 if k.startswith("dpo/") else -2] for k in one} == {
        "images",
        "prompts",
        "pairs",
        "dpo",
    }
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []
    card = "dataset/README.md"
    assert (tmp_path / "one" / card).read_bytes() == (tmp_path / "two" / card).read_bytes()
