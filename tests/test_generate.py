from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from visionprefer.build import build, open_run, run_stage
from visionprefer.config import load_config
from visionprefer.errors import StageOrderError
from visionprefer.generate.diffusers_backend import DiffusersTextToImage
from visionprefer.generate.plan import plan_images
from visionprefer.generate.stage import generation_state
from visionprefer.prompts.stage import load_prompts
from visionprefer.status import run_status

META = (
    "image_id",
    "prompt_id",
    "prompt",
    "generator",
    "model_id",
    "revision",
    "pipeline",
    "scheduler",
    "steps",
    "guidance_scale",
    "seed",
    "height",
    "width",
    "dtype",
    "image_sha256",
    "file",
)


def _images(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "images").rglob("*.png"))}


def test_build_twice_in_two_run_dirs_is_byte_identical(small_build, tmp_path):
    r1 = build(load_config(small_build(run_dir="a")), progress=False)
    r2 = build(load_config(small_build(run_dir="b")), progress=False)
    assert r1.stages["generate"].made == r2.stages["generate"].made == 20
    a, b = _images(tmp_path / "a"), _images(tmp_path / "b")
    assert len(a) == 20 and a == b
    # And a rerun in place does nothing.
    again = build(load_config(small_build(run_dir="a")), progress=False).stages["generate"]
    assert (again.made, again.done_before, again.chunks_run) == (0, 20, 0)


def test_records_carry_full_metadata(small_build, tmp_path):
    build(load_config(small_build()), progress=False)
    run = open_run(load_config(small_build()))
    state = generation_state(run)
    assert len(state.done) == 20
    for rec in state.done.values():
        assert all(rec.get(k) is not None for k in META if k != "revision"), rec
        data = (run.root / rec["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["image_sha256"]
        with Image.open(run.root / rec["file"]) as im:
            assert im.size == (rec["width"], rec["height"]) == (64, 64)
    gens = {r["generator"]: (r["pipeline"], r["scheduler"]) for r in state.done.values()}
    assert gens == {
        "tiny-sd15": ("StableDiffusionPipeline", "DDIMScheduler"),
        "tiny-sd21": ("StableDiffusionPipeline", "DDIMScheduler"),
    }
    # Seeds are paired across guidance scales: same prompt and sample index, same seed.
    by_prompt = {}
    for r in state.done.values():
        by_prompt.setdefault((r["prompt_id"], r["sample_index"]), set()).add(r["seed"])
    assert all(len(s) == 1 for s in by_prompt.values())


def test_adding_a_cfg_value_generates_only_the_new_images(small_build, tmp_path):
    build(load_config(small_build()), progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "images").rglob("*.png")}
    report = build(load_config(small_build(scales=(3.0, 7.5, 12.0))), progress=False).stages["generate"]
    assert (report.made, report.done_before, report.planned) == (10, 20, 30)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "images").rglob("*.png")}
    assert len(after) == 30
    assert all(after[p] == t for p, t in before.items())  # old files untouched
    new = [
        r
        for r in generation_state(open_run(load_config(small_build()))).done.values()
        if r["guidance_scale"] == 12.0
    ]
    assert len(new) == 10


def test_changing_steps_regenerates_but_concurrency_setting_does_not(small_build):
    build(load_config(small_build()), progress=False)
    same = build(load_config(small_build(extra="  device: cpu\n")), progress=False).stages["generate"]
    assert same.made == 0
    cfg = small_build(generators=("tiny-sd15",), extra="")
    cfg.write_text(cfg.read_text().replace("- preset: tiny-sd15", "- {preset: tiny-sd15, steps: 3}"))
    changed = build(load_config(cfg), progress=False).stages["generate"]
    assert (changed.made, changed.planned) == (10, 10)


def test_missing_image_regenerates_only_its_chunk_byte_identical(small_build, tmp_path):
    cfg = load_config(small_build())
    build(cfg, progress=False)
    original = _images(tmp_path / "run")
    victim = next((tmp_path / "run" / "images").rglob("*.png"))
    victim.unlink()
    report = build(cfg, progress=False).stages["generate"]
    assert (report.made, report.chunks_run) == (1, 1)
    assert _images(tmp_path / "run") == original


class _Flaky:
    """Wraps the real generator; raises for chunks containing a chosen prompt."""

    def __init__(self, inner, bad_word, exc):
        self.inner, self.bad_word, self.exc = inner, bad_word, exc
        self.pipeline_name, self.scheduler_name, self.dtype_name = (
            inner.pipeline_name,
            inner.scheduler_name,
            inner.dtype_name,
        )

    def __call__(self, prompts, **kw):
        if any(self.bad_word in p for p in prompts):
            raise self.exc
        return self.inner(prompts, **kw)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RuntimeError("CUDA out of memory"), "transient"),
        (ValueError("prompt rejected by pipeline"), "permanent"),
    ],
)
def test_failures_are_recorded_and_retried_by_kind(small_build, exc, kind):
    cfg = load_config(small_build(generators=("tiny-sd15",)))
    run = open_run(cfg)
    run_stage(cfg, "prompts", run=run)

    def flaky(spec):
        return _Flaky(DiffusersTextToImage(spec), "lighthouse", exc)

    report = run_stage(cfg, "generate", run=run, progress=False, load_generator=flaky)
    assert report.failed > 0 and report.made + report.failed == 10
    st = run_status(run.root)["stages"]["generate"]
    assert (st["done"], st["failed"], st[f"failed_{kind}"]) == (report.made, report.failed, report.failed)
    assert list(st["reasons"]) == [f"{type(exc).__name__}: {exc}"]

    rerun = run_stage(cfg, "generate", run=run, progress=False)
    if kind == "transient":
        assert rerun.made == report.failed
    else:
        assert (rerun.made, rerun.blocked) == (0, report.failed)
        forced = run_stage(cfg, "generate", run=run, progress=False, retry_failed=True)
        assert forced.made == report.failed
    final = run_status(run.root)["stages"]["generate"]
    assert (final["done"], final["failed"], final["pending"], final["state"]) == (10, 0, 0, "done")


def test_sdxl_and_jpeg_output(small_build, tmp_path):
    cfg = load_config(
        small_build(
            generators=("tiny-sdxl",), scales=(5.0,), extra="  image_format: jpeg\n  image_quality: 80\n"
        )
    )
    report = build(cfg, progress=False).stages["generate"]
    assert report.made == 5
    files = list((tmp_path / "run" / "images").rglob("*.jpg"))
    assert len(files) == 5
    with Image.open(files[0]) as im:
        assert im.format == "JPEG"
    rec = next(iter(generation_state(open_run(cfg)).done.values()))
    assert rec["pipeline"] == "StableDiffusionXLPipeline" and rec["generator"] == "tiny-sdxl"


def test_sample_cfg_mode_draws_one_scale_per_image(small_build):
    cfg = load_config(
        small_build(scales=(3.0, 5.0, 7.0, 9.0), extra="  cfg_mode: sample\n  images_per_prompt: 2\n")
    )
    run = open_run(cfg)
    run_stage(cfg, "prompts", run=run)
    chunks = plan_images(load_prompts(run), cfg.generate)
    tasks = [t for c in chunks for t in c.tasks]
    assert len(tasks) == 5 * 2 * 2  # prompts x generators x samples
    assert {t.guidance_scale for t in tasks} <= {3.0, 5.0, 7.0, 9.0}
    assert len({t.guidance_scale for t in tasks}) > 1
    assert chunks == plan_images(load_prompts(run), cfg.generate)  # deterministic


def test_generate_before_prompts_names_the_stage(small_build):
    cfg = load_config(small_build())
    with pytest.raises(StageOrderError, match="run `visionprefer prompts CONFIG` first"):
        run_stage(cfg, "generate", progress=False)


def test_custom_model_path_is_accepted(small_build, tmp_path):
    from visionprefer.models.tiny import tiny_model_path

    path = tiny_model_path("tiny-sd15")
    cfg = small_build(generators=(), scales=(4.0,))
    cfg.write_text(cfg.read_text().replace("  generators:\n", f"  generators:\n    - model: {path}\n"))
    report = build(load_config(cfg), progress=False).stages["generate"]
    assert report.made == 5
    rec = next(iter(generation_state(open_run(load_config(cfg))).done.values()))
    assert rec["generator"] == "custom" and rec["model_id"] == str(path) and rec["steps"] == 50


def test_embedding_noise_candidates(small_build, tmp_path):
    """AGFSync's recipe: sample 0 clean, samples 1..N-1 with noisy text embeddings, all reproducible."""
    import io

    import numpy as np

    extra = "  images_per_prompt: 3\n"

    def config(run_dir, noise):
        path = small_build(generators=("tiny-sd15",), scales=(5.0,), run_dir=run_dir, extra=extra)
        if noise:
            path.write_text(
                path.read_text().replace("- preset: tiny-sd15", "- {preset: tiny-sd15, embedding_noise: 0.5}")
            )
        cfg = load_config(path)
        build(cfg, progress=False)
        recs = generation_state(open_run(cfg)).done.values()
        return {
            (r["prompt_id"], r["sample_index"]): (Path(cfg.run_dir) / r["file"]).read_bytes() for r in recs
        }

    clean, noisy, again = config("clean", False), config("noisy", True), config("again", True)
    assert noisy == again  # reproducible, byte for byte
    assert clean.keys() == noisy.keys() and len(clean) == 15

    def pixels(data):
        return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)

    for (pid, idx), data in noisy.items():
        diff = np.abs(pixels(data) - pixels(clean[(pid, idx)])).max()
        # Same seeds in both runs: sample 0 (clean embedding, through the embedding code path) matches the
        # plain run up to one level; samples 1 and 2 differ because of the noise.
        assert (diff <= 1) if idx == 0 else (diff > 1), (idx, diff)


class _Recording:
    """Wraps the real generator; notes (prompt, guidance scale, seed) of every image it is asked for."""

    def __init__(self, inner, made):
        self.inner, self.made = inner, made
        self.pipeline_name, self.scheduler_name, self.dtype_name = (
            inner.pipeline_name,
            inner.scheduler_name,
            inner.dtype_name,
        )

    def __call__(self, prompts, *, guidance_scale, seeds, **kw):
        self.made.extend((p, float(guidance_scale), s) for p, s in zip(prompts, seeds, strict=True))
        return self.inner(prompts, guidance_scale=guidance_scale, seeds=seeds, **kw)


def test_changing_the_seed_remakes_every_image_and_publishes_the_seeds_used(small_build, tmp_path):
    import pyarrow.parquet as pq

    made: list[tuple[str, float, int]] = []

    def loader(spec):
        return _Recording(DiffusersTextToImage(spec), made)

    cfg = load_config(small_build())
    run_stage(cfg, "prompts")
    assert run_stage(cfg, "generate", progress=False, load_generator=loader).made == 20
    first, before = set(made), _images(tmp_path / "run")
    prompts_before = (tmp_path / "run" / "prompts" / "prompts.jsonl").read_bytes()
    made.clear()

    cfg = load_config(small_build(extra="  seed: 1\n"))
    report = run_stage(cfg, "generate", progress=False, load_generator=loader)
    assert (report.made, report.done_before, report.planned) == (20, 0, 20)  # every image remade
    assert not ({s for *_, s in made} & {s for *_, s in first})  # with new seeds
    assert build(cfg, progress=False).stages["generate"].made == 0
    assert (tmp_path / "run" / "prompts" / "prompts.jsonl").read_bytes() == prompts_before  # prompts stay
    after = _images(tmp_path / "run")
    assert len(after) == 40 and before.items() <= after.items()  # new files beside the old ones

    # The published seed is the one each published image was made with (as the generator was called).
    rows = pq.read_table(tmp_path / "run" / "dataset" / "data" / "images").to_pylist()
    assert len(rows) == 20
    assert {(r["prompt"], r["guidance_scale"], r["seed"]) for r in rows} == set(made)
    recs = generation_state(open_run(cfg)).done
    assert all(recs[r["image_id"]]["seed"] == r["seed"] for r in rows)


@pytest.mark.parametrize("mode", ["grid", "sample"])
def test_reordering_scales_or_renaming_a_generator_makes_nothing_new(small_build, mode):
    extra = f"  cfg_mode: {mode}\n  images_per_prompt: 2\n"
    cfg = load_config(small_build(scales=(3.0, 5.0, 7.5), extra=extra))
    run_stage(cfg, "prompts")
    first = run_stage(cfg, "generate", progress=False)
    assert first.made == first.planned == 5 * 2 * 2 * (3 if mode == "grid" else 1)
    path = small_build(scales=(7.5, 3.0, 5.0), extra=extra)
    path.write_text(path.read_text().replace("- preset: tiny-sd15", "- {preset: tiny-sd15, name: renamed}"))
    again = run_stage(load_config(path), "generate", progress=False)
    assert (again.made, again.done_before, again.planned) == (0, first.planned, first.planned)
