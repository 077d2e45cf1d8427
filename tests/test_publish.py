"""The published dataset folder: load_dataset reads it as is; the DPO export works the diffusers way."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest
from PIL import Image

from visionprefer.build import build, open_run, run_stage
from visionprefer.cli import main
from visionprefer.config import load_config
from visionprefer.publish.schema import CONFIG_NAMES, column_names, features
from visionprefer.status import run_status

from .conftest import write_config

PROMPTS = ["a photo of a cat on a red sofa", "two dogs in the snow", "a blue car by the sea"]


@pytest.fixture
def judged_run(tmp_path, fake_llm):
    server = fake_llm(responder="judge")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    path = write_config(
        tmp_path,
        f"""\
run_dir: {tmp_path / "run"}
prompts: {{sources: [{{path: prompts.txt}}]}}
generate:
  generators: [{{preset: tiny-sd15}}, {{preset: tiny-sd21}}]
  guidance_scales: [3.0, 7.5]
annotate:
  backend: judge
  judge: {{image_max_side: 64, llm: {{base_url: "{server.base_url}", concurrency: 4}}}}
publish: {{rows_per_shard: 5, validation_fraction: 0, test_fraction: 0}}  # every prompt in train
""",
    )
    cfg = load_config(path)
    build(cfg, progress=False)
    return cfg, open_run(cfg)


def test_every_config_loads_offline_and_counts_match_status(judged_run):
    from datasets import load_dataset

    cfg, run = judged_run
    folder = run.root / "dataset"
    status = run_status(run.root)["stages"]
    images = load_dataset(str(folder), split="train")  # the default config
    assert len(images) == status["generate"]["done"] == 12
    assert isinstance(images[0]["image"], Image.Image) and images[0]["image"].size == (64, 64)
    assert images.features == features("images")
    row = images[0]
    assert set(row["prompt_following"]) == {"score", "explanation"} and row["metrics"] is None
    assert row["judge"] == cfg.annotate.judge.llm.model and row["rank"] >= 1
    prompts = load_dataset(str(folder), "prompts", split="train")
    assert len(prompts) == status["prompts"]["done"] == 3
    assert prompts["prompt"] == PROMPTS  # prompt-file order
    pairs = load_dataset(str(folder), "pairs", split="train")
    assert len(pairs) == status["pairs"]["pairs"] == 3 * 6 * 5
    assert isinstance(pairs[0]["image_0"], Image.Image)
    assert (
        len(list((folder / "data" / "images").glob("train-*-of-00003.parquet"))) == 3
    )  # 12 rows, 5 per shard


def test_two_builds_each_load_their_own_rows(judged_run, tmp_path):
    """`load_dataset` keys its cache for a local folder on the card's metadata and the folder's name
    (every build's is `dataset`), not on its path: the card's split sizes keep two builds apart."""
    from datasets import load_dataset

    cfg, run = judged_run
    (tmp_path / "one.txt").write_text(PROMPTS[0] + "\n")
    other = replace(
        cfg,
        run_dir=str(tmp_path / "other"),
        prompts=replace(cfg.prompts, sources=(replace(cfg.prompts.sources[0], path="one.txt"),)),
    )
    build(other, progress=False)
    assert len(load_dataset(str(run.root / "dataset"), split="train")) == 12
    assert len(load_dataset(str(tmp_path / "other" / "dataset"), split="train")) == 4
    assert len(load_dataset(str(tmp_path / "other" / "dataset"), "pairs", split="train")) == 6 * 5


def test_pairs_without_embedded_images(judged_run):
    from datasets import load_dataset

    cfg, run = judged_run
    folder = run.root / "dataset"
    with_images = sum(p.stat().st_size for p in (folder / "data" / "pairs").glob("*.parquet"))
    cfg = replace(cfg, publish=replace(cfg.publish, pair_images=False))
    run_stage(cfg, "publish", run=run, progress=False)
    pairs = load_dataset(str(folder), "pairs", split="train")
    assert len(pairs) == 3 * 6 * 5 and pairs.features == features("pairs")
    assert set(pairs["image_0"]) == {None} and set(pairs["image_1"]) == {None}
    images = {r["image_id"] for r in load_dataset(str(folder), split="train").select_columns(["image_id"])}
    assert set(pairs["image_id_0"]) | set(pairs["image_id_1"]) <= images  # joinable
    without = sum(p.stat().st_size for p in (folder / "data" / "pairs").glob("*.parquet"))
    assert without < with_images / 5  # 90 rows of 64-px noise images: most of the bytes were images
    dpo = load_dataset(str(folder / "dpo"), split="train")
    assert all(isinstance(b, bytes) and b for b in dpo["jpg_0"])  # the DPO export keeps its images
    assert "`publish.pair_images: false`" in (folder / "README.md").read_text()


def test_card_describes_every_column_and_states_the_counts(judged_run):
    _, run = judged_run
    card = (run.root / "dataset" / "README.md").read_text()
    assert card.startswith("---\n") and "\nconfigs:\n" in card and "task_categories:\n- text-to-image" in card
    assert "{{" not in card
    for name in CONFIG_NAMES:
        assert column_names(name) == tuple(features(name)), name
        section = card.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        for column in features(name):
            assert f"| `{column}` |" in section, (name, column)
    assert "random weights" in card and "VisionPrefer" in card and "AGFSync" in card
    assert re.search(r"\| generate \| 12 \| 0 \|", card)
    # The Hub's own card parser reads the metadata: configs, features, licence, task, size.
    from huggingface_hub import DatasetCard

    data = DatasetCard.load(run.root / "dataset" / "README.md").data
    assert [c["config_name"] for c in data.configs] == list(CONFIG_NAMES)
    assert {c["config_name"] for c in data.dataset_info} == set(CONFIG_NAMES)
    assert data.task_categories == ["text-to-image"] and data.size_categories == ["n<1K"] and data.license


def test_dpo_export_the_diffusers_way(judged_run):
    """Access pattern of diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py."""
    from datasets import load_dataset

    _, run = judged_run
    folder = run.root / "dataset"
    dpo = load_dataset(str(folder / "dpo"), split="train")
    pairs = {p["pair_id"]: p for p in load_dataset(str(folder), "pairs", split="train")}
    assert len(dpo) > 0
    assert set(dpo.column_names) >= {"caption", "jpg_0", "jpg_1", "label_0", "label_1"}
    assert run_status(run.root)["stages"]["pairs"]["dpo_pairs"] == len(dpo)  # status counts the export

    def preprocess_train(examples):
        pixel_pairs = []
        for col_name in ["jpg_0", "jpg_1"]:
            pixel_pairs.append([Image.open(io.BytesIO(b)).convert("RGB") for b in examples[col_name]])
        preferred = []
        for i, label_0 in enumerate(examples["label_0"]):
            preferred.append(pixel_pairs[1][i] if label_0 == 0 else pixel_pairs[0][i])
        examples["preferred"] = preferred
        return examples

    batch = preprocess_train(dpo[:])
    for i, pair_id in enumerate(batch["pair_id"]):
        pair = pairs[pair_id]
        assert pair["label_0"] != 0.5 and batch["label_0"][i] + batch["label_1"][i] == 1.0
        assert (batch["label_0"][i] == 0) == (pair["score_1"] > pair["score_0"])
        winner = pair["image_1"] if pair["score_1"] > pair["score_0"] else pair["image_0"]
        assert batch["preferred"][i].tobytes() == winner.convert("RGB").tobytes()
        assert batch["caption"][i] == pair["prompt"] and pair["aspect"] == "overall"


def test_publishing_twice_gives_identical_parquet(judged_run):
    cfg, run = judged_run
    files = sorted((run.root / "dataset").rglob("*.parquet"))
    before = {p: p.read_bytes() for p in files}
    run_stage(cfg, "publish", run=run, progress=False)
    assert sorted((run.root / "dataset").rglob("*.parquet")) == files
    assert all(p.read_bytes() == data for p, data in before.items())


def test_status_says_whether_the_published_folder_is_up_to_date(judged_run, capsys):
    cfg, run = judged_run
    st = run_status(run.root)["stages"]["publish"]
    assert (st["state"], st["done"]) == ("done", 12)
    run_stage(cfg, "pairs", run=run, progress=False)  # pairs rewritten: the folder may be out of date
    assert run_status(run.root)["stages"]["publish"]["state"] == "stale"
    assert main(["status", str(run.root)]) == 0
    assert "run `visionprefer publish CONFIG`" in capsys.readouterr().out
    run_stage(cfg, "publish", run=run, progress=False)
    assert run_status(run.root)["stages"]["publish"]["state"] == "done"
    # A setting that enters no key (the judge's concurrency) leaves the folder up to date ...
    judge = cfg.annotate.judge
    faster = replace(judge, llm=replace(judge.llm, concurrency=8))
    cfg = replace(cfg, annotate=replace(cfg.annotate, judge=faster))
    run_stage(cfg, "annotate", progress=False)  # nothing to do; the run's config snapshot is updated
    assert run_status(run.root)["stages"]["publish"]["state"] == "done"
    # ... one that changes the dataset (how aspects aggregate into `overall`) does not.
    weights = {**cfg.annotate.aspect_weights, "aesthetic": 2.0}
    cfg = replace(cfg, annotate=replace(cfg.annotate, aspect_weights=weights))
    run_stage(cfg, "annotate", progress=False)
    assert run_status(run.root)["stages"]["publish"]["state"] == "stale"
    (run.root / "dataset" / "README.md").unlink()  # as after a crash mid-publish (the card comes last)
    assert run_status(run.root)["stages"]["publish"]["state"] == "interrupted"


def test_status_into_a_closed_pipe_stops_quietly(judged_run):
    import subprocess
    import sys

    _, run = judged_run
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionprefer", "status", str(run.root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first write (as with `| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == ""


class _FakeHub:
    def __init__(self):
        self.calls = []

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))


def test_push_with_an_injected_hub_client(judged_run, monkeypatch):
    from visionprefer.publish.push import push_dataset

    _, run = judged_run
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value_123")
    hub = _FakeHub()
    url = push_dataset(run.root, "my-org/my-prefs", api=hub)
    assert url == "https://huggingface.co/datasets/my-org/my-prefs"
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"] * 2
    assert hub.calls[0][1] == {
        "repo_id": "my-org/my-prefs",
        "repo_type": "dataset",
        "private": False,
        "exist_ok": True,
    }
    assert hub.calls[1][1]["folder_path"] == str(run.root / "dataset")
    # The companion repository: the DPO export as its default config.
    assert hub.calls[2][1]["repo_id"] == hub.calls[3][1]["repo_id"] == "my-org/my-prefs-dpo"
    assert hub.calls[3][1]["folder_path"] == str(run.root / "dataset-dpo")
    card = (run.root / "dataset" / "README.md").read_text()
    assert 'load_dataset("my-org/my-prefs", "pairs"' in card and "ORG/NAME" not in card
    assert "--dataset_name my-org/my-prefs-dpo " in card
    companion = (run.root / "dataset-dpo" / "README.md").read_text()
    assert 'load_dataset("my-org/my-prefs-dpo", split="train")' in companion and "ORG/NAME" not in companion
    for path in run.root.rglob("*"):
        if path.is_file():
            assert b"hf_secret_token_value_123" not in path.read_bytes()


def test_push_errors_are_one_line(tmp_path, capsys, judged_run):
    _, run = judged_run
    assert main(["push", str(run.root), "--repo-id", "not a repo"]) == 2
    assert "is not of the form ORG/NAME" in capsys.readouterr().err
    (run.root / "dataset" / "README.md").unlink()
    assert main(["push", str(run.root), "--repo-id", "a/b"]) == 2
    assert "run `visionprefer publish CONFIG` first" in capsys.readouterr().err


def _portable_build(tmp_path, run_dir: str):
    """A metric-feedback build with a preset and two custom models given by absolute paths (one named, one
    not), at guidance scales whose text order is not their numeric order, into ``tmp_path/run_dir``."""
    from visionprefer.models.tiny import tiny_model_path

    model = tiny_model_path("tiny-sd15")
    (tmp_path / "p.txt").write_text("a photo of a cat on a red sofa\ntwo dogs in the snow\n")
    path = write_config(
        tmp_path,
        f"""\
run_dir: {tmp_path / run_dir}
prompts: {{sources: [{{path: {tmp_path / "p.txt"}}}]}}
generate:
  generators: [{{preset: tiny-sd15}}, {{model: {model}, name: mine, steps: 3}}, {{model: {model}, steps: 4}}]
  guidance_scales: [10.0, 3.0]
annotate:
  backend: metrics
  metrics: {{vqa_model: tiny-blip, clip_model: tiny-clip, aesthetic_model: tiny-aesthetic,
            aesthetic_clip_model: tiny-clip}}
""",
        name=f"{run_dir}.yaml",
    )
    cfg = load_config(path)
    build(cfg, progress=False)
    return open_run(cfg).root / "dataset", str(model)


def test_the_published_folder_does_not_depend_on_the_run_directory(tmp_path):
    import pyarrow.parquet as pq

    a, model = _portable_build(tmp_path, "first-run-dir")
    b, _ = _portable_build(tmp_path, "second-run-dir")
    files_a = {p.relative_to(a): p.read_bytes() for p in sorted(a.rglob("*")) if p.is_file()}
    files_b = {p.relative_to(b): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert files_a.keys() == files_b.keys() and len(files_a) > 4
    assert [str(k) for k, v in files_a.items() if files_b[k] != v] == []  # byte-identical
    for data in files_a.values():  # no path of this machine, no run-directory name, anywhere
        assert (
            str(tmp_path).encode() not in data and b"first-run-dir" not in data and model.encode() not in data
        )

    # Two custom models are told apart in the pairs (by their names), and the model column names the folder.
    pairs = pq.read_table(a / "data" / "pairs").to_pylist()
    assert {p["generator_0"] for p in pairs} | {p["generator_1"] for p in pairs} == {
        "tiny-sd15",
        "mine",
        "custom",
    }
    images = pq.read_table(a / "data" / "images").to_pylist()
    from pathlib import Path

    assert {r["model_id"] for r in images if r["generator"] == "custom"} == {Path(model).name}

    # The card lists guidance scales as numbers: 3 before 10.
    card = (a / "README.md").read_text()
    per_scale = card.split("Scores per guidance scale:")[1].split("\n\n")[1]  # the table
    assert [float(x) for x in re.findall(r"^\| (\d+(?:\.\d+)?) \|", per_scale, re.M)] == [3.0, 10.0]
    assert "| 3, 10 |" in card  # the generators table
