"""The published layout works from the Hub with the tools people already use (issue 15).

One judged build (ten prompts, four images each) is published and pushed to a fake Hub client; the folders
push would upload as each repository stand in for the Hub. Checked against them: every command the cards
print (datasets' path rule, then run), the diffusers Diffusion-DPO example's loading and decoding, PickScore's
dataset access, `concatenate_datasets` with Pick-a-Pic v2's features, stable splits by prompt, the card's
sizes against the ones `datasets` computes, licence metadata, file modes, and the AGFSync export.
"""

from __future__ import annotations

import ast
import io
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionprefer.build import build, open_run, run_stage
from visionprefer.config import load_config
from visionprefer.publish.schema import SPLITS, features
from visionprefer.publish.splits import split_of

from .conftest import write_config

PROMPTS = [
    "a photo of a cat on a red sofa",
    "two dogs in the snow",
    "a blue car by the sea",
    "a bowl of ramen on a wooden table",
    "an astronaut riding a horse",
    "a lighthouse at dusk",
    "three apples and a pear",
    "a watercolour of a fox in a forest",
    "a neon sign that says open",
    "a sailing boat on a calm lake",
]
REPO_ID = "my-org/prefs"


def _config(tmp_path: Path, server, prompts: list[str], formats: str = "[]"):
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
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
publish: {{validation_fraction: 0.3, test_fraction: 0.3, formats: {formats}}}
""",
    )
    return load_config(path)


class _FakeHub:
    def __init__(self):
        self.uploads: dict[str, Path] = {}

    def create_repo(self, **kw):
        assert kw["repo_type"] == "dataset"

    def upload_folder(self, **kw):
        self.uploads[kw["repo_id"]] = Path(kw["folder_path"])


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """(config, run, {repo id: the folder push uploads as it}) after build + push to a fake Hub."""
    from visionprefer.publish.push import push_dataset
    from visionprefer.testing import FakeOpenAIServer

    tmp_path = tmp_path_factory.mktemp("hub")
    server = FakeOpenAIServer(folder=tmp_path / "server", responder="judge", max_seconds=300).start()
    try:
        cfg = _config(tmp_path, server, PROMPTS, formats="[agfsync]")
        build(cfg, progress=False)
    finally:
        server.stop()
    run = open_run(cfg)
    hub = _FakeHub()
    push_dataset(run.root, REPO_ID, api=hub)
    assert set(hub.uploads) == {REPO_ID, REPO_ID + "-dpo"}
    return cfg, run, hub.uploads


def _load(folder: Path, *args, **kwargs):
    from datasets import load_dataset

    return load_dataset(str(folder), *args, **kwargs)


def _card_commands(card: str) -> tuple[list[tuple[list, dict]], list[tuple[str, str]]]:
    """The `load_dataset(...)` calls of the card's Python blocks (positional and keyword arguments, as
    literals) and the `--dataset_name X --dataset_split_name Y` pairs of its shell blocks."""
    calls = []
    for block in re.findall(r"```python\n(.*?)```", card, re.S):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_dataset":
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                calls.append((args, kwargs))
    shell = []
    for block in re.findall(r"```bash\n(.*?)```", card, re.S):
        shell += re.findall(r"--dataset_name (\S+) --dataset_split_name (\S+)", block)
    return calls, shell


def _is_hub_id(name: str) -> bool:
    """datasets 5 takes a relative path with at most one `/` that is not a local folder for a Hub id."""
    return not os.path.isabs(name) and name.count("/") <= 1 and not Path(name).exists()


def diffusers_dpo_batch(dataset_name: str, split: str = "validation", n: int = 4):
    """Exactly what diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py does with the
    data: `load_dataset(args.dataset_name, cache_dir=..., split=args.dataset_split_name)` (default split
    `validation`, no config name), then in `preprocess_train` decode `jpg_0`/`jpg_1` with PIL from bytes,
    put the preferred image first by `label_0 == 0`, concatenate on the channel axis, read `caption`.
    (torchvision's transforms are replaced by a numpy conversion; the column access is the same.)"""
    from datasets import load_dataset

    train_dataset = load_dataset(dataset_name, split=split)

    def preprocess_train(examples):
        all_pixel_values = []
        for col_name in ["jpg_0", "jpg_1"]:
            images = [Image.open(io.BytesIO(im_bytes)).convert("RGB") for im_bytes in examples[col_name]]
            all_pixel_values.append([np.asarray(image, dtype=np.float32) / 255.0 for image in images])
        combined_pixel_values = []
        for im_tup, label_0 in zip(zip(*all_pixel_values, strict=True), examples["label_0"], strict=True):
            if label_0 == 0:
                im_tup = im_tup[::-1]
            combined_pixel_values.append(np.concatenate(im_tup, axis=-1))
        examples["pixel_values"] = combined_pixel_values
        examples["input_ids"] = [caption.split() for caption in examples["caption"]]
        return examples

    train_dataset = train_dataset.with_transform(preprocess_train)
    return train_dataset, train_dataset[: min(n, len(train_dataset))]


def test_every_command_the_cards_print_works_on_the_pushed_layout(pushed):
    _, _, uploads = pushed
    ran = Counter()
    for repo_id, folder in uploads.items():
        card = (folder / "README.md").read_text(encoding="utf-8")
        calls, shell = _card_commands(card)
        assert calls and shell, repo_id
        for args, kwargs in calls:
            name = args[0]
            assert _is_hub_id(name) and name in uploads, name  # at most one `/`, and a repo push creates
            ds = _load(uploads[name], *args[1:], **kwargs)
            assert len(ds) > 0, (name, args, kwargs)
            ran[name] += 1
        for name, split in shell:  # the Diffusion-DPO example's --dataset_name / --dataset_split_name
            assert _is_hub_id(name) and name in uploads, name
            ds, batch = diffusers_dpo_batch(str(uploads[name]), split)
            assert len(ds) > 0 and len(batch["pixel_values"]) > 0
            ran[name] += 1
        assert f"{REPO_ID}/dpo" not in card  # the old recipe, a path to datasets
    assert ran[REPO_ID] >= 5 and ran[REPO_ID + "-dpo"] >= 3


def test_diffusers_dpo_example_trains_on_the_dpo_repo_as_is(pushed):
    _, _, uploads = pushed
    folder = uploads[REPO_ID + "-dpo"]
    ds, batch = diffusers_dpo_batch(str(folder))  # the script's default split: validation
    assert len(ds) > 0
    raw = _load(folder, split="validation")
    for i, pixels in enumerate(batch["pixel_values"]):
        row = raw[i]
        assert row["label_0"] in (0.0, 1.0) and row["label_0"] + row["label_1"] == 1.0
        best = row["jpg_0"] if row["best_image_uid"] == row["image_0_uid"] else row["jpg_1"]
        preferred = np.asarray(Image.open(io.BytesIO(best)).convert("RGB"), dtype=np.float32) / 255.0
        assert pixels.shape[-1] == 6 and np.array_equal(pixels[..., :3], preferred)  # preferred first
    # At the main repository's root the default config is `images`: the reason for the companion.
    assert "jpg_0" not in _load(uploads[REPO_ID], split="train").column_names


def test_pickscore_dataset_access_works(pushed):
    """What PickScore's trainer/datasetss/clip_hf_dataset.py reads: filters on are_different / has_label,
    the `_unique` evaluation splits, caption, jpg_0/1, label_0/1, num_example_per_prompt, and with
    `only_on_best` image_0_uid / image_1_uid through pandas."""
    import torch

    _, _, uploads = pushed
    folder = uploads[REPO_ID + "-dpo"]
    train = _load(folder, split="train")
    train = train.filter(lambda x: x["are_different"]).filter(lambda x: x["has_label"])
    assert len(train) > 0
    for split in ("validation_unique", "test_unique"):
        ds = _load(folder, split=split).filter(lambda x: x["has_label"])
        base = _load(folder, split=split.removesuffix("_unique"))
        assert sorted(ds["caption"]) == sorted(set(base["caption"]))  # one example per prompt
        assert set(ds["pair_id"]) <= set(base["pair_id"]) and set(ds["num_example_per_prompt"]) == {1}
    example = train[0]
    item = {
        "label_0": torch.tensor(example["label_0"])[None],
        "label_1": torch.tensor(example["label_1"])[None],
        "num_example_per_prompt": torch.tensor(example["num_example_per_prompt"])[None],
    }
    assert item["label_0"] + item["label_1"] == 1 and item["num_example_per_prompt"] >= 1
    assert str(train.features["label_0"].dtype) == "float64"
    for col in ("jpg_0", "jpg_1"):
        assert Image.open(io.BytesIO(example[col])).convert("RGB").size == (64, 64)
    for split in SPLITS:  # num_example_per_prompt: the prompt's rows in the split
        ds = _load(folder, split=split)
        counts = Counter(ds["prompt_id"])
        assert all(n == counts[p] for p, n in zip(ds["prompt_id"], ds["num_example_per_prompt"], strict=True))
    df = train.remove_columns(["jpg_0", "jpg_1"]).to_pandas()  # only_on_best
    df = df[df["has_label"] == 1]
    winners = dict(zip(df[df["label_0"] == 1].image_1_uid, df[df["label_0"] == 1].image_0_uid, strict=True))
    assert winners and all(df.best_image_uid.isin(set(df.image_0_uid) | set(df.image_1_uid)))
    assert (df.ranking_id >= 0).all() and df.ranking_id.is_unique


def test_concatenates_with_pick_a_pic_v2(pushed):
    from datasets import Dataset, Features, Value, concatenate_datasets

    _, _, uploads = pushed
    ours = _load(uploads[REPO_ID + "-dpo"], split="train")
    # The features Pick-a-Pic v2 publishes (yuvalkirstain/pickapic_v2, dataset_info).
    v2 = Features(
        {
            "are_different": Value("bool"),
            "best_image_uid": Value("string"),
            "caption": Value("string"),
            "created_at": Value("timestamp[ns]"),
            "has_label": Value("bool"),
            "image_0_uid": Value("string"),
            "image_0_url": Value("string"),
            "image_1_uid": Value("string"),
            "image_1_url": Value("string"),
            "jpg_0": Value("binary"),
            "jpg_1": Value("binary"),
            "label_0": Value("float64"),
            "label_1": Value("float64"),
            "model_0": Value("string"),
            "model_1": Value("string"),
            "ranking_id": Value("int64"),
            "user_id": Value("int64"),
            "num_example_per_prompt": Value("int64"),
            "__index_level_0__": Value("int64"),
        }
    )
    import datetime

    row = {
        "are_different": True,
        "best_image_uid": "u0",
        "caption": "a cat",
        "created_at": datetime.datetime(2023, 5, 1),
        "has_label": True,
        "image_0_uid": "u0",
        "image_0_url": "https://example.invalid/0.jpg",
        "image_1_uid": "u1",
        "image_1_url": "https://example.invalid/1.jpg",
        "jpg_0": b"\xff\xd8",
        "jpg_1": b"\xff\xd8",
        "label_0": 1.0,
        "label_1": 0.0,
        "model_0": "sdxl",
        "model_1": "sd21",
        "ranking_id": 7,
        "user_id": 3,
        "num_example_per_prompt": 1,
        "__index_level_0__": 0,
    }
    pickapic = Dataset.from_list([row, row], features=v2)
    shared = set(v2) & set(ours.features)
    assert shared >= {"caption", "jpg_0", "jpg_1", "label_0", "label_1", "image_0_uid", "image_1_uid"}
    assert all(ours.features[k] == v2[k] for k in shared)
    both = concatenate_datasets([pickapic, ours])
    assert len(both) == len(ours) + 2 and both.features["label_0"] == Value("float64")
    narrow = concatenate_datasets(
        [pickapic.select_columns(sorted(shared)), ours.select_columns(sorted(shared))]
    )
    assert len(narrow) == len(ours) + 2


def test_splits_are_by_prompt_and_the_same_in_every_config(pushed):
    cfg, _, uploads = pushed
    main, dpo = uploads[REPO_ID], uploads[REPO_ID + "-dpo"]
    seen: dict[str, str] = {}
    for split in SPLITS:
        prompts = set(_load(main, "prompts", split=split)["prompt_id"])
        assert prompts, split  # ten prompts at 0.3 / 0.3: every split has some
        assert set(_load(main, split=split)["prompt_id"]) == prompts
        assert set(_load(main, "pairs", split=split)["prompt_id"]) == prompts
        for name in ("dpo", "agfsync"):
            assert set(_load(main, name, split=split)["prompt_id"]) <= prompts
        assert _load(dpo, split=split)["pair_id"] == _load(main, "dpo", split=split)["pair_id"]
        for p in prompts:
            assert p not in seen
            seen[p] = split
            assert split_of(p, 0.3, 0.3, cfg.publish.split_seed) == split
    assert len(seen) == len(PROMPTS)


def test_split_assignment_is_stable_when_prompts_are_added():
    ids = [f"prompt-{i}" for i in range(2000)]
    before = {p: split_of(p, 0.05, 0.05) for p in ids}
    more = ids + [f"new-{i}" for i in range(200)]  # 10% more
    after = {p: split_of(p, 0.05, 0.05) for p in more}
    assert all(after[p] == s for p, s in before.items())
    shares = Counter(before.values())
    assert 60 < shares["validation"] < 140 and 60 < shares["test"] < 140
    assert split_of("x", 0.05, 0.05, seed=0) == split_of("x", 0.05, 0.05, seed=0)


def test_adding_prompts_and_rebuilding_moves_no_prompt(pushed, tmp_path, fake_llm):
    from datasets import load_dataset

    cfg, run, _ = pushed
    # A smaller build of its own (the module's build stays as it is): 10 prompts, then one more (10%).
    server = fake_llm(responder="judge")
    small = _config(tmp_path, server, PROMPTS)
    small = replace(
        small,
        generate=replace(
            small.generate, generators=small.generate.generators[:1], guidance_scales=(3.0, 7.5)
        ),
    )
    build(small, progress=False)
    folder = open_run(small).root / "dataset"

    def assignment() -> dict[str, str]:
        out = {}
        for split in SPLITS:
            try:
                ds = load_dataset(str(folder), "prompts", split=split)
            except ValueError:  # a split without rows is not published
                continue
            out.update(dict.fromkeys(ds["prompt_id"], split))
        return out

    before = assignment()
    (tmp_path / "prompts.txt").write_text("\n".join([*PROMPTS, "a red kite over green hills"]) + "\n")
    build(small, progress=False)
    after = assignment()
    assert len(after) == len(before) + 1
    assert all(after[p] == s for p, s in before.items())


def test_card_sizes_are_the_ones_datasets_computes(pushed, tmp_path):
    from datasets import load_dataset_builder
    from huggingface_hub import DatasetCard

    _, _, uploads = pushed
    for repo_id, folder in uploads.items():
        data = DatasetCard.load(folder / "README.md").data
        infos = data.dataset_info if isinstance(data.dataset_info, list) else [data.dataset_info]
        assert {c["config_name"] for c in data.configs} == {i.get("config_name", "default") for i in infos}
        for info in infos:
            name = info.get("config_name", "default")
            builder = load_dataset_builder(str(folder), name, cache_dir=str(tmp_path / "cache"))
            builder.download_and_prepare()
            computed = builder.info
            card_splits = {s["name"]: (s["num_examples"], s["num_bytes"]) for s in info["splits"]}
            assert card_splits == {s: (v.num_examples, v.num_bytes) for s, v in computed.splits.items()}, (
                repo_id,
                name,
            )
            assert info["dataset_size"] == computed.dataset_size, (repo_id, name)
            assert info["download_size"] == computed.download_size, (repo_id, name)
        # Licence, creators, sources and task as the Hub expects them.
        assert data.license == "other" and data.license_name == "generator-licenses"
        assert data.license_link == "LICENSE.md" and (folder / "LICENSE.md").is_file()
        assert "tiny-sd15" in (folder / "LICENSE.md").read_text()
        assert data.annotations_creators == ["machine-generated"] and data.source_datasets == ["original"]
        assert data.task_categories == ["text-to-image"] and data.size_categories


def test_every_published_file_gets_the_mode_the_umask_gives(pushed):
    cfg, run, uploads = pushed

    def modes() -> set[int]:
        return {p.stat().st_mode & 0o777 for f in uploads.values() for p in f.rglob("*") if p.is_file()}

    assert modes() == {0o644}  # pytest runs under the usual umask 022
    old = os.umask(0o027)
    try:
        run_stage(cfg, "publish", run=run, progress=False)
        assert modes() == {0o640}
    finally:
        os.umask(old)
        run_stage(cfg, "publish", run=run, progress=False)
    assert modes() == {0o644}


def test_agfsync_export(pushed):
    _, _, uploads = pushed
    main = uploads[REPO_ID]
    agf = _load(main, "agfsync", split="train")
    assert agf.features == features("agfsync") and len(agf) > 0
    dpo = {r["pair_id"]: r for r in _load(main, "dpo", split="train").remove_columns(["jpg_1"])}
    for row in agf.select(range(min(4, len(agf)))):
        assert isinstance(row["good_jpg"], Image.Image) and isinstance(row["bad_jpg"], Image.Image)
        pair = dpo[row["pair_id"]]
        assert row["caption"] == pair["caption"]
        image_0 = Image.open(io.BytesIO(pair["jpg_0"])).convert("RGB").tobytes()
        good = row["good_jpg"].convert("RGB").tobytes()
        assert (good == image_0) == (pair["label_0"] == 1.0)


def test_two_diffusion_dpo_training_steps_on_the_dpo_repo(pushed):
    """The diffusers example's training step on batches from its own loading code (above), default split,
    with the tiny SD 1.5: VAE latents of both images, the same noise and timestep for the pair, the UNet and
    a frozen reference UNet, and the Diffusion-DPO loss -log σ(-β/2 · ((e_w − e_l) − (r_w − r_l))) with
    β = 5000 as the script's default. Two optimiser steps run and change the weights."""
    import copy

    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from visionprefer.models.tiny import tiny_model_path

    torch.manual_seed(0)
    _, _, uploads = pushed
    ds, _ = diffusers_dpo_batch(str(uploads[REPO_ID + "-dpo"]))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_path("tiny-sd15"), safety_checker=None)
    unet, ref_unet = pipe.unet, copy.deepcopy(pipe.unet).requires_grad_(False)
    vae, text_encoder, tokenizer = pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in unet.parameters()]
    losses = []
    for step in range(2):
        batch = ds[step * 2 : step * 2 + 2] if len(ds) >= 4 else ds[:2]
        pixels = torch.tensor(np.stack(batch["pixel_values"])).permute(0, 3, 1, 2) * 2.0 - 1.0  # [-1, 1]
        feed = torch.cat(pixels.chunk(2, dim=1))  # preferred images, then the others (as the script)
        with torch.no_grad():
            latents = vae.encode(feed).latent_dist.sample() * vae.config.scaling_factor
            ids = tokenizer(batch["caption"], padding="max_length", truncation=True, return_tensors="pt")
            text = text_encoder(ids.input_ids)[0].repeat(2, 1, 1)
        noise = torch.randn_like(latents).chunk(2)[0].repeat(2, 1, 1, 1)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(batch["caption"]),)).repeat(2)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        model_losses = (unet(noisy, t, text).sample.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
        w, l_ = model_losses.chunk(2)
        with torch.no_grad():
            ref = (ref_unet(noisy, t, text).sample.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
            rw, rl = ref.chunk(2)
        loss = -F.logsigmoid(-0.5 * 5000 * ((w - l_) - (rw - rl))).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and len(losses) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, unet.parameters(), strict=True))
