"""Public benchmark prompt sets as build sources and eval prompt lists, downloaded through a checked cache.

The "download" copies the reference files in ../shared/data (read in place), so the canonical URL, the
sha256 check and the spec's format/column are exercised without network access.
"""

from __future__ import annotations

import shutil

import pytest

from visionprefer.config import load_config
from visionprefer.errors import ConfigError, SourceError
from visionprefer.prompts import benchmarks as bm
from visionprefer.prompts import collect_prompts

from .conftest import REPO, write_config

SHARED = REPO.parent / "shared" / "data"
LOCAL = {
    "partiprompts": SHARED / "partiprompts" / "PartiPrompts.tsv",
    "drawbench": SHARED / "drawbench" / "DrawBench.csv",
    "geneval": SHARED / "geneval" / "evaluation_metadata.jsonl",
    "imagereward": SHARED / "imagereward" / "benchmark-prompts.json",
}


@pytest.fixture
def offline_downloads(monkeypatch):
    seen = []

    def fake(url, dest):
        name = next(n for n in LOCAL if bm.benchmark_spec(n)["url"] == url)
        seen.append(name)
        shutil.copyfile(LOCAL[name], dest)

    original = bm.benchmark_file
    monkeypatch.setattr(bm, "benchmark_file", lambda name, downloader=None: original(name, downloader=fake))
    return seen


@pytest.mark.parametrize("name", list(LOCAL))
def test_each_prompt_set_loads_with_its_spec(tmp_path, offline_downloads, name):
    cfg = load_config(
        write_config(
            tmp_path,
            f"run_dir: {tmp_path / 'r'}\nprompts: {{sources: [{{benchmark: {name}}}], dedup: false, max_chars: 5000}}\n"
            "generate: {generators: [{preset: tiny-sd15}]}\n",
        )
    )
    result = collect_prompts(cfg)
    spec = bm.benchmark_spec(name)
    assert len(result.kept) + len(result.rejected) == spec["rows"]
    assert result.kept[0]["source"] == name
    collect_prompts(cfg)  # cached now
    assert offline_downloads == [name]


def test_a_tampered_download_is_refused():
    def bad(url, dest):
        dest.write_text("Prompt\nnot the real file\n")

    with pytest.raises(SourceError, match="sha256"):
        bm.benchmark_file("drawbench", downloader=bad)
    from visionprefer.download import cache_root

    assert not (cache_root() / "benchmarks" / "drawbench" / "DrawBench.csv").exists()


def test_unknown_benchmark_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown prompt set; choose one of partiprompts"):
        load_config(
            write_config(
                tmp_path,
                f"run_dir: {tmp_path}\nprompts: {{sources: [{{benchmark: coco}}]}}\n"
                "generate: {generators: [{preset: tiny-sd15}]}\n",
            )
        )
