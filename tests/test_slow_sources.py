"""Network checks of the real sources behind the tiny stand-ins (``pytest -m slow``; excluded by default).

Run where the Hub and GitHub are reachable: ``.venv/bin/python -m pytest -m slow tests/test_slow_sources.py``.
Each test downloads the canonical file through the package's own code (into a temporary cache) and checks it
against the facts the package relies on: pinned hashes and row counts of the benchmark files and of the human
test sets' annotation files, the pinned revisions of the generator presets, the HPS v2 checkpoints and prompt
sets, the LAION aesthetic head.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize("name", ["partiprompts", "drawbench", "geneval", "imagereward"])
def test_prompt_set_downloads_with_its_pinned_hash_and_row_count(name):
    from visionprefer.evaluate.score import read_prompt_list
    from visionprefer.prompts.benchmarks import benchmark_file, benchmark_spec

    path = benchmark_file(name)  # sha256-checked against the spec
    spec = benchmark_spec(name)
    assert path.is_file()
    assert len(read_prompt_list(name)) <= spec["rows"]  # cleaning may drop empty rows, never add


def test_tifa_question_file_matches_the_published_counts():
    import json

    from visionprefer.evaluate.tifa import fetch_tifa_file

    rows = json.loads(fetch_tifa_file("question_answers").read_text(encoding="utf-8"))
    assert len(rows) == 25_829 and len({r["id"] for r in rows}) == 4_081
    captions = json.loads(fetch_tifa_file("text_inputs").read_text(encoding="utf-8"))
    assert len(captions) == 4_081


@pytest.mark.parametrize("preset", ["sd15", "sd21", "dreamlike", "sdxl"])
def test_preset_revision_exists_and_names_the_expected_pipeline(preset):
    import json

    from huggingface_hub import hf_hub_download

    from visionprefer.generate.presets import PRESETS

    p = PRESETS[preset]

    def fetch(filename: str) -> dict:
        path = hf_hub_download(p.model_id, filename, revision=p.revision)
        return json.loads(Path(path).read_text(encoding="utf-8"))

    expected = "StableDiffusionXLPipeline" if preset == "sdxl" else "StableDiffusionPipeline"
    assert fetch("model_index.json")["_class_name"] == expected
    scheduler = fetch("scheduler/scheduler_config.json")
    if preset == "sd21":
        assert scheduler.get("prediction_type") == "v_prediction"


@pytest.mark.parametrize("version", ["v2.0", "v2.1"])
def test_hps_checkpoints_are_where_the_scorer_looks(version):
    from huggingface_hub import HfApi

    from visionprefer.scorers.hpsv2 import HPS_CHECKPOINTS, HPS_REPO

    info = HfApi().get_paths_info(HPS_REPO, [HPS_CHECKPOINTS[version]])
    assert len(info) == 1 and 1.8e9 < info[0].size < 2.1e9  # float16 ViT-H-14, about 1.97 GB


@pytest.mark.parametrize("style", ["anime", "concept-art", "paintings", "photo"])
def test_hps_benchmark_styles_have_800_prompts(style):
    from visionprefer.evaluate.hpsv2 import load_benchmark_prompts

    assert len(load_benchmark_prompts(style)) == 800


def test_laion_aesthetic_head_downloads_and_fits_clip_l14(tmp_path):
    from visionprefer.scorers.aesthetic import build_head, download_laion_v2, load_head_state

    path = download_laion_v2(cache_dir=tmp_path)
    head = build_head(load_head_state(path), source=str(path))
    assert head.layers[0].in_features == 768  # the CLIP ViT-L/14 image embedding


def _human_annotation_files() -> list[tuple[str, str]]:
    """(test set, files key) of every annotations file a human test-set spec gives a download URL for."""
    from visionprefer.evaluate.testsets import TESTSETS, testset_spec

    return [
        (name, kind)
        for name in TESTSETS
        for kind, entry in testset_spec(name)["files"].items()
        if kind.startswith("annotations") and entry.get("url")
    ]


@pytest.mark.parametrize(("name", "kind"), _human_annotation_files())
def test_human_test_set_file_has_its_pinned_hash_and_the_sizes_its_spec_states(
    name, kind, tmp_path, monkeypatch
):
    from visionprefer.evaluate.testsets import load_testset, size_problems, testset_file, testset_spec
    from visionprefer.leaderboard.schema import file_sha256

    monkeypatch.setenv("VISIONPREFER_CACHE", str(tmp_path))
    spec = testset_spec(name)
    entry = spec["files"][kind]
    path = testset_file(name, kind)  # refused unless it matches a pinned sha256
    digest = file_sha256(path)
    if entry["sha256"] is None:
        print(f"{name} files.{kind}: sha256 {digest}")
        pytest.fail(
            f"benchmarks/specs/human/{name}.yaml: files.{kind} has no pinned sha256; the file at "
            f"{entry['url']} has sha256 {digest}: pin it (sha256: {digest}, verified: true)"
        )
    assert digest == entry["sha256"]
    problems = size_problems(spec, load_testset(name, path))
    assert not problems, f"{name} ({kind}): " + "; ".join(problems)


def _hub_test_sets() -> list[str]:
    """Human test sets whose annotations live in a Hub dataset repository (no pinned download URL)."""
    from visionprefer.evaluate.testsets import TESTSETS, testset_spec

    return [
        name
        for name in TESTSETS
        if testset_spec(name).get("hub_repo") and not testset_spec(name)["files"]["annotations"].get("url")
    ]


@pytest.mark.parametrize("name", _hub_test_sets())
def test_hub_test_set_annotations_match_their_spec(name, tmp_path):
    """The annotation files of a Hub-hosted test set at the spec's ``hub_revision``: a plain file (HPD v2/v3
    ``test.json``) is downloaded, loaded with the package's loader and checked against the spec's ``size``;
    a split stored as Parquet (Pick-a-Pic, MJ-Bench) is checked by the Hub's own LFS hashes of its files.
    An unpinned hash (``sha256: null``) prints what the Hub serves and fails, asking the maintainer to pin
    it (gated repositories such as MJ-Bench need an accepted licence and a token)."""
    import re

    from huggingface_hub import HfApi, hf_hub_download

    from visionprefer.evaluate.testsets import load_testset, size_problems, testset_spec
    from visionprefer.leaderboard.schema import file_sha256

    spec = testset_spec(name)
    entry = spec["files"]["annotations"]
    repo, revision = spec["hub_repo"], spec.get("hub_revision")
    filename = entry["filename"]
    if re.fullmatch(r"[\w./-]+", filename):  # one file
        path = Path(
            hf_hub_download(repo, filename, repo_type="dataset", revision=revision, cache_dir=tmp_path)
        )
        digests = {filename: file_sha256(path)}
        problems = size_problems(spec, load_testset(name, path))
        assert not problems, f"{name}: " + "; ".join(problems)
    else:  # a split of Parquet files: the Hub lists each file's LFS sha256
        split = spec.get("split")
        info = HfApi().dataset_info(repo, revision=revision, files_metadata=True)
        digests = {
            s.rfilename: s.lfs.sha256
            for s in info.siblings or []
            if s.rfilename.endswith(".parquet") and split and split in s.rfilename and s.lfs is not None
        }
        assert digests, f"{repo}@{info.sha}: no Parquet file of split {split!r}"
        revision = revision or info.sha
    pinned = entry.get("sha256")
    if pinned is None:
        shown = ", ".join(f"{f} {d}" for f, d in sorted(digests.items()))
        print(f"{name}: {repo}@{revision}: {shown}")
        pytest.fail(
            f"benchmarks/specs/human/{name}.yaml: files.annotations has no pinned sha256; the Hub serves "
            f"{shown} (pin hub_revision and the hash, verified: true)"
        )
    assert pinned in digests.values() or pinned == digests.get(filename)
