"""Run directories written by an earlier version (tests/data/old_runs/c43cf5a, visionprefer 0.1.0 of the
first release round) still open: status reads them, and a build continues in them with exit 0, remaking
only what the newer keys ask for and keeping every old file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from visionprefer.cli import main
from visionprefer.rundir import read_jsonl
from visionprefer.status import format_status, run_status

OLD = Path(__file__).parent / "data" / "old_runs" / "c43cf5a"


def _copy(tmp_path: Path, name: str, base_url: str | None = None) -> Path:
    folder = tmp_path / "old"
    shutil.copytree(OLD, folder)
    config = folder / f"{name}.yaml"
    if base_url is not None:
        config.write_text(config.read_text().replace("BASE_URL", base_url))
    return config


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["metrics", "judge"])
def test_status_reads_an_old_run_directory(tmp_path, name, capsys):
    config = _copy(tmp_path, name)
    run = config.parent / f"old_{name}_run"
    st = run_status(run)
    gen = st["stages"]["generate"]
    old_images = list(read_jsonl(run / "generate" / "done-rank0.jsonl"))
    assert len(old_images) == 8
    # Image keys now include the seed: the old images are kept on disk as stale records, planned again.
    assert (gen["planned"], gen["done"], gen["stale_records"]) == (8, 0, 8)
    assert st["stages"]["prompts"]["done"] == 2
    assert "generate" in format_status(st)
    assert main(["status", str(run)]) == 0
    if name == "judge":
        assert st["llm"]["judge"]["completions"] == 2 and st["llm"]["judge"]["usd"] > 0


@pytest.mark.parametrize("name", ["metrics", "judge"])
def test_a_build_continues_in_an_old_run_directory(tmp_path, name, fake_llm, monkeypatch):
    base_url = None
    if name == "judge":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        base_url = fake_llm(responder="judge").base_url
    config = _copy(tmp_path, name, base_url)
    monkeypatch.chdir(config.parent)  # the configs name their run directory relative to where they run
    run = config.parent / f"old_{name}_run"
    before = _files(run)
    old_usage = len(list(read_jsonl(run / "llm" / "usage-rank0.jsonl"))) if name == "judge" else 0
    assert main(["build", str(config), "-q"]) == 0
    after = _files(run)
    for rel, data in before.items():  # nothing the old version wrote is lost or rewritten
        if rel in ("run.json", "config.yaml") or rel.startswith(("publish/", "pairs/", "prompts/")):
            continue  # rewritten by every build (the marker, the current config, derived stages)
        if rel.endswith(".jsonl"):  # logs are append-only
            assert after[rel].startswith(data), rel
        else:
            assert after.get(rel) == data, rel
    st = run_status(run)
    assert all(row["state"] in ("done", "off") for row in st["stages"].values()), format_status(st)
    assert st["stages"]["generate"]["done"] == 8 and st["stages"]["annotate"]["done"] > 0
    if name == "judge":
        usage = list(read_jsonl(run / "llm" / "usage-rank0.jsonl"))
        assert not [r for r in usage if r.get("recovered")]  # the old answers all had their usage records
        assert len(usage) > old_usage
    from datasets import load_dataset

    images = load_dataset(str(run / "dataset"), "images", split="train")
    assert len(images) == 8
