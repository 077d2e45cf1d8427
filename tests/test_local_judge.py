"""The judge in-process on a tiny random-weight VLM (tiny-vlm, LLaVA-style), decoding under the judge's
JSON schema with llguidance: the quickstart path, determinism, resume after kill -9, ranks, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from visionprefer.build import build, open_run, run_stage
from visionprefer.config import ASPECTS, load_config
from visionprefer.errors import ConfigError, ModelLoadError
from visionprefer.rundir import read_jsonl
from visionprefer.status import run_status

from .conftest import REPO, write_config

PROMPTS = ["a red cat on a sofa", "two dogs in the snow", "three apples on a table", "a blue car by the sea"]


def _config(tmp_path: Path, *, run: str = "run", local: str = "", prompts=PROMPTS) -> Path:
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return write_config(
        tmp_path,
        f"""\
run_dir: {tmp_path / run}
prompts: {{sources: [{{path: p.txt}}]}}
generate: {{generators: [{{preset: tiny-sd15}}, {{preset: tiny-sd21}}], guidance_scales: [3.0, 7.5]}}
annotate:
  backend: judge
  judge:
    backend: local
    image_max_side: 64
    local: {{model: tiny-vlm, max_explanation_chars: 32, batch_size: 2{local}}}
""",
        name=f"{run}.yaml",
    )


def _done(run_dir: Path) -> list[dict]:
    return [r for p in sorted((run_dir / "annotate").glob("done-rank*.jsonl")) for r in read_jsonl(p)]


def _usage(run_dir: Path) -> list[dict]:
    return [r for p in sorted((run_dir / "llm").glob("usage-rank*.jsonl")) for r in read_jsonl(p)]


def test_the_quickstart_publishes_judge_annotations_from_the_tiny_vlm(tmp_path):
    from datasets import load_dataset

    cfg = load_config(REPO / "examples" / "quickstart.yaml", run_dir=str(tmp_path / "qs"))
    assert cfg.annotate.judge.backend == "local" and cfg.annotate.judge.local.model == "tiny-vlm"
    report = build(cfg, progress=False)
    ann = report.stages["annotate"]
    assert (ann.planned, ann.made, ann.failed) == (8, 8, 0)
    st = run_status(tmp_path / "qs")["stages"]["annotate"]
    assert (st["done"], st["failed"], st["failed_permanent"]) == (8, 0, 0)
    from datasets import concatenate_datasets

    splits = load_dataset(str(tmp_path / "qs" / "dataset"))  # train and validation (splits by prompt)
    rows = concatenate_datasets(list(splits.values()))
    assert len(rows) == 48
    scores = set()
    for row in rows:
        assert row["judge"] == "tiny-vlm"
        assert 1 <= row["rank"] <= 6
        for aspect in ASPECTS:
            assert 1 <= row[aspect]["score"] <= 5 and isinstance(row[aspect]["explanation"], str)
            assert len(row[aspect]["explanation"]) <= cfg.annotate.judge.local.max_explanation_chars
            scores.add(row[aspect]["score"])
    assert len(scores) > 1  # random weights, but not one answer repeated for every image
    for rec in _done(tmp_path / "qs"):
        assert sorted(r["rank"] for r in rec["results"].values()) == list(range(1, 7))


def test_the_same_group_gets_byte_identical_annotations(tmp_path):
    first = load_config(_config(tmp_path, run="a", prompts=PROMPTS[:2]))
    second = load_config(_config(tmp_path, run="b", prompts=PROMPTS[:2]))
    build(first, progress=False)
    build(second, progress=False)
    a = sorted(json.dumps(r, sort_keys=True) for r in _done(tmp_path / "a"))
    b = sorted(json.dumps(r, sort_keys=True) for r in _done(tmp_path / "b"))
    assert len(a) == 2 and a == b
    # (the log's line order follows which batch finished first; the records themselves are identical)
    pa = {
        p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a" / "dataset").rglob("*.parquet")
    }
    pb = {
        p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b" / "dataset").rglob("*.parquet")
    }
    assert pa and pa == pb  # and so is every published file


def test_decoding_settings_enter_the_annotation_key(tmp_path):
    cfg = load_config(_config(tmp_path, prompts=PROMPTS[:1]))
    build(cfg, progress=False)
    wider = load_config(_config(tmp_path, prompts=PROMPTS[:1], local=", max_explanation_chars: 40"))
    bigger = load_config(_config(tmp_path, prompts=PROMPTS[:1], local=", batch_size: 4"))
    from visionprefer.annotate.judge import load_guide
    from visionprefer.annotate.stage import judge_groups

    run = open_run(cfg)
    keys = [
        judge_groups(c, run, load_guide(c.annotate.judge)[1])[0][0].annotation_id
        for c in (cfg, wider, bigger)
    ]
    assert keys[0] != keys[1]  # decides the output
    assert keys[0] == keys[2]  # does not


def test_kill_9_during_local_judging_resumes_without_rejudging(tmp_path):
    cfg_path = _config(tmp_path, local=", batch_size: 1")
    cfg = load_config(cfg_path)
    for stage in ("prompts", "generate"):
        run_stage(cfg, stage, progress=False)
    done_log = tmp_path / "run" / "annotate" / "done-rank0.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionprefer", "annotate", str(cfg_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while not done_log.exists() or len(done_log.read_bytes().splitlines()) < 1:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = {r["annotation_id"] for r in _done(tmp_path / "run")}
    assert 1 <= len(before) < 4
    decoded_before = len(_usage(tmp_path / "run"))
    report = run_stage(cfg, "annotate", progress=False)
    assert report.done_before == len(before) and report.made == 4 - len(before) and report.failed == 0
    ids = [r["annotation_id"] for r in _done(tmp_path / "run")]
    assert len(ids) == len(set(ids)) == 4
    # Only the groups without a done record were decoded again (at most the one in flight twice).
    assert len(_usage(tmp_path / "run")) - decoded_before == 4 - len(before)


def test_torchrun_ranks_judge_every_group_exactly_once(tmp_path):
    cfg_path = _config(tmp_path)
    cfg = load_config(cfg_path)
    for stage in ("prompts", "generate"):
        run_stage(cfg, stage, progress=False)
    port = 29500 + os.getpid() % 1000
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            "visionprefer",
            "annotate",
            str(cfg_path),
            "--quiet",
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = _done(tmp_path / "run")
    ids = [r["annotation_id"] for r in records]
    assert len(ids) == len(set(ids)) == 4
    assert {p.name for p in (tmp_path / "run" / "annotate").glob("done-rank*.jsonl")} == {
        "done-rank0.jsonl",
        "done-rank1.jsonl",
    }
    per_key = Counter(r["key"] for r in _usage(tmp_path / "run") if r["purpose"] == "judge")
    assert len(per_key) == 4 and set(per_key.values()) == {1}  # each group decoded once, by one rank


def _copy_tiny(name: str, dest: Path) -> Path:
    from visionprefer.models.tiny import tiny_model_path

    shutil.copytree(tiny_model_path(name), dest)
    return dest


def test_bad_local_models_fail_before_judging_in_one_line(tmp_path):
    from visionprefer.annotate.local_judge import LocalJudgeClient
    from visionprefer.config import LocalJudgeConfig

    not_vlm = _copy_tiny("tiny-clip", tmp_path / "clip")
    with pytest.raises(ModelLoadError, match="vision-language model") as err:
        LocalJudgeClient(LocalJudgeConfig(model=str(not_vlm))).load()
    assert "\n" not in str(err.value)

    no_template = _copy_tiny("tiny-vlm", tmp_path / "vlm")
    for f in no_template.iterdir():
        if "chat_template" in f.name:
            f.unlink()
        elif f.suffix == ".json":
            data = json.loads(f.read_text())
            if isinstance(data, dict) and "chat_template" in data:
                del data["chat_template"]
                f.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="no chat template"):
        LocalJudgeClient(LocalJudgeConfig(model=str(no_template))).load()

    client = LocalJudgeClient(LocalJudgeConfig(model="tiny-vlm"))
    bad = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}
    with pytest.raises(ConfigError, match="grammar engine rejects") as err:
        client.check_schema(bad)
    assert "\n" not in str(err.value)

    # And through the stage: nothing judged, nothing recorded.
    cfg = load_config(_config(tmp_path, prompts=PROMPTS[:1], local=f", model: {not_vlm}"))
    for stage in ("prompts", "generate"):
        run_stage(cfg, stage, progress=False)
    with pytest.raises(ModelLoadError):
        run_stage(cfg, "annotate", progress=False)
    assert _done(tmp_path / "run") == [] and not list((tmp_path / "run" / "annotate").glob("failed-*"))


def test_the_grammar_keeps_every_answer_inside_the_api_schema():
    """The tightened schema the engine decodes under only adds maxLength to free strings."""
    import jsonschema

    from visionprefer.annotate.judge import judge_schema
    from visionprefer.annotate.local_judge import tighten_schema

    schema = judge_schema(3, 1, 5)
    tight = tighten_schema(schema, 10)
    instance = {
        f"image_{i}": {
            **{a: {"explanation": "x" * 10, "score": "3"} for a in ASPECTS},
            "rank": str(i),
        }
        for i in (1, 2, 3)
    }
    jsonschema.validate(instance, tight)
    jsonschema.validate(instance, schema)
    instance["image_1"]["fidelity"]["explanation"] = "x" * 11
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(instance, tight)
    assert (
        tight["properties"]["image_1"]["properties"]["rank"]
        == schema["properties"]["image_1"]["properties"]["rank"]
    )
