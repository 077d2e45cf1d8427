"""The evaluator registry: a toy evaluator added through it alone (tests/toy_evaluator.py, one module plus
one register() call) runs from the CLI into a summary and into a leaderboard submission that validates and
renders; the built-in entries agree with the submission JSON Schema; one scorer factory for all commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from visionprefer.cli import main
from visionprefer.evaluate import registry
from visionprefer.leaderboard import (
    SubmissionError,
    render_leaderboard,
    submission_problems,
    submission_schema,
    validate_submission,
)

from . import toy_evaluator

MODEL = {
    "revision": None,
    "pipeline": "StableDiffusionPipeline",
    "scheduler": "PNDMScheduler",
    "steps": 20,
    "guidance_scale": 7.5,
    "height": 64,
    "width": 64,
    "seed_rule": "derive_seed(0, relative path, 0)",
    "dtype": "float32",
}


@pytest.fixture
def toy():
    toy_evaluator.register()
    yield toy_evaluator
    toy_evaluator.unregister()


def _images(folder: Path, levels: list[int]) -> Path:
    folder.mkdir(parents=True)
    for i, level in enumerate(levels):
        Image.new("RGB", (8, 8), (level, level, level)).save(folder / f"{i:05d}.png")
    return folder


def _eval(tmp_path: Path, name: str, levels: list[int]) -> Path:
    out = tmp_path / "board" / name
    info = tmp_path / f"{name}.json"
    info.write_text(json.dumps({"id": f"toy/{name}", **MODEL}))
    args = ["eval", "brightness", "--images", str(_images(tmp_path / f"img-{name}", levels))]
    args += ["--out", str(out), "--submission", str(out / "submission.json"), "--model-info", str(info)]
    assert main(args) == 0
    return out


def test_a_toy_evaluator_runs_validates_and_renders(toy, tmp_path, capsys):
    dark = _eval(tmp_path, "dark", [0, 51, 102])
    bright = _eval(tmp_path, "bright", [153, 204, 255])
    printed = capsys.readouterr().out
    assert "brightness: mean 0.2000 over 3 images" in printed and "submission: " in printed
    summary = json.loads((dark / "brightness_summary.json").read_text())
    assert summary["n_images"] == 3 and summary["mean_brightness"] == pytest.approx(0.2)
    sub = json.loads((bright / "submission.json").read_text())
    assert sub["benchmarks"]["brightness"]["summary"] == pytest.approx(
        {"mean_brightness": 0.8, "darkest": 0.6}
    )
    assert sub["model"]["resolution"] == {"height": 64, "width": 64}

    files = [str(dark / "submission.json"), str(bright / "submission.json")]
    assert main(["leaderboard", "validate", *files]) == 0
    table = tmp_path / "table"
    board = tmp_path / "board"
    assert main(["leaderboard", "render", str(board), "--out", str(table), "--benchmark", "brightness"]) == 0
    markdown = (table / "leaderboard.md").read_text()
    assert "# Leaderboard: Brightness, ranked by mean_brightness" in markdown
    lines = [line for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert "toy/bright" in lines[0] and "0.800" in lines[0] and "toy/dark" in lines[1]
    assert "<h2>Brightness: mean_brightness</h2>" in (table / "leaderboard.html").read_text()


def test_the_toy_benchmark_is_checked_by_its_schema_and_its_check(toy, tmp_path):
    out = _eval(tmp_path, "m", [0, 255])
    data = json.loads((out / "submission.json").read_text())
    validate_submission(data, base_dir=out)

    bad = json.loads(json.dumps(data))
    bad["benchmarks"]["brightness"]["summary"]["darkest"] = 0.9  # the registered semantic check
    with pytest.raises(SubmissionError, match=r"benchmarks\.brightness\.summary\.darkest: 0\.9 is above"):
        validate_submission(bad)
    bad = json.loads(json.dumps(data))
    bad["benchmarks"]["brightness"]["summary"]["median"] = 0.5  # the registered JSON Schema
    assert submission_problems(bad) == [
        (
            "benchmarks.brightness.summary.median",
            "unknown key; valid keys here: mean_brightness, darkest",
        )
    ]
    bad["benchmarks"]["brightness"]["summary"] = {"mean_brightness": 1.5, "darkest": 0.0}
    assert submission_problems(bad) == [
        ("benchmarks.brightness.summary.mean_brightness", "must be <= 1, got 1.5")
    ]
    # Once unregistered, the benchmark is unknown again.
    toy.unregister()
    try:
        problems = submission_problems(data)
        assert problems[0][0] == "benchmarks.brightness" and "unknown key" in problems[0][1]
        assert main(["leaderboard", "validate", str(out / "submission.json")]) == 1
    finally:
        toy.register()


def test_registry_refuses_duplicates_and_checks_summary_fields(toy, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        toy.register()
    broken = registry.Evaluator(
        name="broken",
        help="its summary lacks a field it promises",
        add_arguments=lambda sp: sp.add_argument("--out", required=True),
        run=lambda args: {"benchmark": "broken"},
        summary_file="broken_summary.json",
        summary_fields=("benchmark", "value"),
    )
    registry.register(broken)
    try:
        with pytest.raises(RuntimeError, match="'broken': its summary lacks value"):
            main(["eval", "broken", "--out", str(tmp_path)])
        # An evaluator without leaderboard entries refuses --submission with one line.
        from visionprefer.errors import ConfigError
        from visionprefer.leaderboard.from_eval import write_eval_submission

        with pytest.raises(ConfigError, match="not available for `eval broken`"):
            write_eval_submission("broken", {"model": MODEL}, tmp_path, tmp_path / "s.json")
    finally:
        registry.unregister("broken")


def test_builtin_entries_match_the_schema_file():
    builtins = registry.benchmarks()
    in_file = list(submission_schema()["properties"]["benchmarks"]["properties"])
    assert sorted(builtins) == sorted(in_file)
    assert all(b.schema is None for b in builtins.values())  # all defined in submission.schema.json
    assert list(registry.evaluators()) == list(registry.BUILTIN)
    for ev in registry.evaluators().values():
        assert ev.summary_file == f"{ev.name}_summary.json" and "benchmark" in ev.summary_fields
        # an evaluator either feeds leaderboard benchmarks through its entries, or has none
        assert (ev.entries is not None) == bool(ev.benchmarks), ev.name


def test_the_example_renders_through_the_registry(tmp_path):
    fixture = Path(__file__).parent / "data" / "leaderboard" / "sdxl"
    shutil.copytree(fixture, tmp_path / "sdxl")
    for name, bench in registry.benchmarks().items():
        markdown, _ = render_leaderboard(tmp_path, benchmark=name)
        assert f"Leaderboard: {bench.title}, ranked by" in markdown and "sdxl/submission.json" in markdown


# ------------------------------------------------------------------------------------------ scorer factory


def test_metric_feedback_and_eval_score_build_scorers_alike(tmp_path, monkeypatch):
    """Both go through scorers.factory with the same settings: device, batch size, CQ threshold, models."""
    from visionprefer.annotate.metrics import scorer_settings
    from visionprefer.config import load_config
    from visionprefer.evaluate.score import run_score
    from visionprefer.scorers import factory

    (tmp_path / "p.txt").write_text("a photo of a cat\n")
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "prompts: {sources: [{path: p.txt}]}\n"
        "generate: {generators: [{preset: tiny-sd15}]}\n"
        "annotate:\n  backend: metrics\n  metrics:\n"
        "    clip_model: tiny-clip\n    aesthetic_model: tiny-aesthetic\n    aesthetic_clip_model: tiny-clip\n"
        "    cq_model: tiny-yolos\n    cq_threshold: 0.5\n    batch_size: 3\n    device: cpu\n"
    )
    config = load_config(config_file, run_dir=str(tmp_path / "run"))
    from_metrics = scorer_settings(config)

    built = []

    class Stop(Exception):
        pass

    def fake_build_scorer(name, settings, *, clip=None):
        built.append((name, settings))
        raise Stop

    monkeypatch.setattr(factory, "build_scorer", fake_build_scorer)
    _images(tmp_path / "img", [10])
    with pytest.raises(Stop):
        run_score(
            tmp_path / "p.txt",
            tmp_path / "out",
            images=tmp_path / "img",
            metrics=["cq"],
            cq_model="tiny-yolos",
            cq_threshold=0.5,
            clip_model="tiny-clip",
            aesthetic_model="tiny-aesthetic",
            aesthetic_clip_model="tiny-clip",
            device="cpu",
            batch_size=3,
        )
    [(name, from_score)] = built
    assert name == "cq"
    for key in ("device", "batch_size", "cq_model", "cq_threshold", "clip_model", "aesthetic_model"):
        assert getattr(from_score, key) == getattr(from_metrics, key), key
    assert (from_metrics.cq_threshold, from_metrics.batch_size, from_metrics.device) == (0.5, 3, "cpu")
