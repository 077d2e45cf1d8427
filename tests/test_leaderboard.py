"""Leaderboard submissions: the documented example validates, crafted bad files are rejected with a message
naming the field, and rendering ranks, groups and escapes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from visionprefer.errors import ConfigError, VisionPreferError
from visionprefer.leaderboard import (
    SubmissionError,
    build_submission,
    load_submission,
    render_leaderboard,
    submission_schema,
    validate_submission,
    write_submission,
)
from visionprefer.leaderboard import schema as schema_module

FIXTURE = Path(__file__).parent / "data" / "leaderboard" / "sdxl"


def example() -> dict:
    return json.loads((FIXTURE / "submission.json").read_text(encoding="utf-8"))


@pytest.fixture
def folder(tmp_path) -> Path:
    """A copy of the example submission with its results files."""
    target = tmp_path / "sub"
    shutil.copytree(FIXTURE, target)
    return target


def write(folder: Path, data: dict, name: str = "submission.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------- valid files


def test_the_schema_file_is_the_one_description_of_the_format():
    # The module points to the JSON Schema and the example file instead of restating them.
    doc = schema_module.__doc__
    assert "submission.schema.json" in doc and "tests/data/leaderboard/sdxl/submission.json" in doc
    assert '"schema": "visionprefer.submission/1"' not in doc and "tifa_average" not in doc
    assert (FIXTURE / "submission.json").is_file()


def test_example_is_valid_from_file_and_dict(folder):
    validate_submission(folder / "submission.json")  # results files checked next to the file
    validate_submission(example())  # no folder: structure and contradictions only
    validate_submission(example(), base_dir=FIXTURE)
    assert load_submission(folder / "submission.json") == example()


def test_schema_file_is_valid_json_schema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(submission_schema())
    assert submission_schema()["properties"]["schema"]["const"] == schema_module.SCHEMA_ID


def test_error_is_a_visionprefer_value_error():
    with pytest.raises(SubmissionError) as info:
        validate_submission({"schema": "visionprefer.submission/1"})
    assert isinstance(info.value, VisionPreferError) and isinstance(info.value, ValueError)
    assert info.value.field == "model"
    assert str(info.value) == "model: missing (required) (and 2 more problems)"
    assert [f for f, _ in info.value.problems] == ["model", "environment", "benchmarks"]


def test_import_is_cheap():
    code = "import sys, visionprefer.leaderboard; print(sorted({'torch', 'jsonschema'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------- bad submissions


def _set(path: str, value):
    def mutate(d):
        *parents, last = _parts(path)
        for p in parents:
            d = d[p]
        d[last] = value

    return mutate


def _delete(path: str):
    def mutate(d):
        *parents, last = _parts(path)
        for p in parents:
            d = d[p]
        del d[last]

    return mutate


def _parts(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in path.split("/")]


def _shift_ratings(d):
    for r in d["benchmarks"]["bradley_terry"]["summary"]["ratings"].values():
        r["rating"] += 10


def _both_seeds(d):
    d["model"]["seeds"]["values"] = [0, 1, 2]


def _both_evaluators(d):
    d["benchmarks"]["winrate"]["evaluators"]["scorer"] = "yuvalkirstain/PickScore_v1"


def _corrupt_results(d):
    pass  # the file is changed on disk below


HPS = "benchmarks/hpsv2/summary"
OPP = "benchmarks/winrate/summary/opponents/0"
BAD = [
    # missing
    ("missing-field", _delete("model/scheduler"), "model.scheduler", "missing (required)"),
    ("missing-style", _delete(f"{HPS}/styles/photo"), "benchmarks.hpsv2.summary.styles.photo", "missing"),
    ("missing-env", _delete("environment/torch"), "environment.torch", "missing"),
    (
        "ci-without-method",
        _delete("benchmarks/score/summary/clip/ci/method"),
        "benchmarks.score.summary.clip.ci.method",
        "missing",
    ),
    (
        "metric-without-evaluator",
        _delete("benchmarks/score/evaluators/pickscore"),
        "benchmarks.score.evaluators.pickscore",
        "the summary reports pickscore",
    ),
    ("no-benchmarks", _set("benchmarks", {}), "benchmarks", "needs at least 1 entry, got 0"),
    # wrong type or value
    (
        "string-number",
        _set(f"{HPS}/styles/anime/mean", "32.84"),
        "benchmarks.hpsv2.summary.styles.anime.mean",
        'must be a number, got a string "32.84"',
    ),
    ("bool-count", _set("model/steps", True), "model.steps", "must be an integer, got a boolean true"),
    ("dtype", _set("model/dtype", "fp16"), "model.dtype", 'must be one of "float32", "float16", "bfloat16"'),
    (
        "tifa-out-of-range",
        _set("benchmarks/tifa/summary/tifa_average", 1.2),
        "benchmarks.tifa.summary.tifa_average",
        "must be <= 1, got 1.2",
    ),
    (
        "bad-sha-format",
        _set("benchmarks/tifa/results/sha256", "abc"),
        "benchmarks.tifa.results.sha256",
        "must be 64 lowercase hexadecimal digits",
    ),
    ("unknown-key", _set("model/cfg", 7.5), "model.cfg", "unknown key; valid keys here: id, revision"),
    (
        "unknown-benchmark",
        _set("benchmarks/geneval", {}),
        "benchmarks.geneval",
        "valid keys here: tifa, hpsv2, score, winrate, bradley_terry",
    ),
    (
        "nan",
        _set(f"{HPS}/styles/anime/std", float("nan")),
        "benchmarks.hpsv2.summary.styles.anime.std",
        "must be a finite number, got nan",
    ),
    # versions
    (
        "unknown-schema-version",
        _set("schema", "visionprefer.submission/2"),
        "schema",
        "unknown format version '2': this visionprefer reads 'visionprefer.submission/1'",
    ),
    ("no-schema", _delete("schema"), "schema", "missing"),
    (
        "unknown-hps-version",
        _set("benchmarks/hpsv2/metric_version", "v3"),
        "benchmarks.hpsv2.metric_version",
        'must be one of "v2.0", "v2.1"; got a string "v3"',
    ),
    (
        "hps-version-vs-checkpoint",
        _set("benchmarks/hpsv2/metric_version", "v2.0"),
        "benchmarks.hpsv2.summary.checkpoint",
        "'HPS_v2.1_compressed.pt' is the HPS v2.1 checkpoint but metric_version is 'v2.0'",
    ),
    # contradictions
    (
        "hps-average",
        _set(f"{HPS}/average", 31.0),
        "benchmarks.hpsv2.summary.average",
        "31 is not the mean over the styles, 30.6350",
    ),
    ("hps-n", _set("benchmarks/hpsv2/n", 3000), "benchmarks.hpsv2.n", "3000 differs from the 3200 images"),
    (
        "win-rate",
        _set(f"{OPP}/win_rate", 0.66),
        "benchmarks.winrate.summary.opponents[0].win_rate",
        "0.66 is not (wins + 0.5 ties) / n = 0.6375",
    ),
    (
        "decisive-rate",
        _set(f"{OPP}/decisive_win_rate", 0.7),
        "benchmarks.winrate.summary.opponents[0].decisive_win_rate",
        "0.7 is not wins / (wins + losses) = 0.6627",
    ),
    (
        "wtl-sum",
        _set(f"{OPP}/losses", 56),
        "benchmarks.winrate.summary.opponents[0].n",
        "wins + ties + losses = 199, not n = 200",
    ),
    (
        "ci-low-above-high",
        _set(f"{OPP}/bootstrap_ci/low", 0.7),
        "benchmarks.winrate.summary.opponents[0].bootstrap_ci.low",
        "0.7 is above high 0.6875",
    ),
    (
        "ci-misses-estimate",
        _set(f"{OPP}/bootstrap_ci/low", 0.65),
        "benchmarks.winrate.summary.opponents[0].bootstrap_ci",
        "[0.65, 0.6875] does not contain its estimate win_rate = 0.6375",
    ),
    (
        "wilson",
        _set(f"{OPP}/wilson_ci/high", 0.75),
        "benchmarks.winrate.summary.opponents[0].wilson_ci.high",
        "0.75 is not the 0.95 Wilson bound for 112 wins in 169 decisive outcomes, 0.7297",
    ),
    ("judge-and-scorer", _both_evaluators, "benchmarks.winrate.evaluators", 'exactly one of "judge"'),
    (
        "tifa-n",
        _set("benchmarks/tifa/n", 4000),
        "benchmarks.tifa.n",
        "differs from summary.n_captions = 4081",
    ),
    (
        "tifa-stdev-null",
        _set("benchmarks/tifa/summary/tifa_stdev", None),
        "benchmarks.tifa.summary.tifa_stdev",
        "must be a number",
    ),
    (
        "tifa-human",
        _set("benchmarks/tifa/summary/accuracy_by_type/human", 0.9),
        "benchmarks.tifa.summary.accuracy_by_type.human",
        '"animal/human"',
    ),
    (
        "bt-name",
        _set("benchmarks/bradley_terry/summary/model_name", "sdxl-base"),
        "benchmarks.bradley_terry.summary.model_name",
        "'sdxl-base' is not among the rated models (sdxl, sd21, sd15)",
    ),
    (
        "bt-shifted",
        _shift_ratings,
        "benchmarks.bradley_terry.summary.ratings",
        "the ratings average 1010.00, not 1000",
    ),
    (
        "resolution",
        _set("model/resolution/height", 1020),
        "model.resolution.height",
        "1020 is not divisible by 8",
    ),
    ("seeds", _both_seeds, "model.seeds", 'exactly one of "values"'),
    ("created", _set("created", "2025-06-01T12:00:00"), "created", "needs a UTC offset"),
    # results files
    (
        "results-outside",
        _set("benchmarks/tifa/results/path", "../elsewhere/tifa.jsonl"),
        "benchmarks.tifa.results.path",
        "must be a relative path inside the submission's folder",
    ),
    (
        "results-missing",
        _set("benchmarks/tifa/results/path", "results/gone.jsonl"),
        "benchmarks.tifa.results.path",
        "file not found",
    ),
    ("results-sha", _corrupt_results, "benchmarks.hpsv2.results.sha256", "does not match"),
]


@pytest.mark.parametrize(("mutate", "field", "phrase"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_submission_is_rejected_naming_the_field(folder, mutate, field, phrase):
    data = example()
    mutate(data)
    if mutate is _corrupt_results:
        with open(folder / "results" / "hpsv2_items.jsonl", "a", encoding="utf-8") as f:
            f.write('{"style": "photo", "index": 1, "hpsv2": 99.0}\n')
    path = write(folder, data)
    with pytest.raises(SubmissionError) as info:
        validate_submission(path)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.field == field
    assert message.startswith(f"{path}: {field}: "), message
    assert phrase in message, message


def test_repeated_key_and_broken_json_are_rejected(folder):
    text = (folder / "submission.json").read_text(encoding="utf-8")
    path = folder / "dup.json"
    path.write_text(text.replace('"steps": 30,', '"steps": 30, "steps": 50,'), encoding="utf-8")
    with pytest.raises(SubmissionError, match=r"dup\.json: model\.steps: key appears more than once"):
        validate_submission(path)
    path.write_text(text[:200], encoding="utf-8")
    with pytest.raises(SubmissionError, match=r"dup\.json: invalid JSON at line \d+ column \d+"):
        validate_submission(path)
    with pytest.raises(SubmissionError, match=r"nothere\.json: no such file"):
        validate_submission(folder / "nothere.json")


def test_every_problem_is_listed():
    data = example()
    data["model"]["steps"] = "30"
    data["model"]["dtype"] = "fp16"
    with pytest.raises(SubmissionError) as info:
        validate_submission(data)
    assert str(info.value).endswith("(and 1 more problem)")
    assert [f for f, _ in info.value.problems] == ["model.steps", "model.dtype"]


def test_no_decisive_outcomes_means_null_rates():
    data = example()
    o = data["benchmarks"]["winrate"]["summary"]["opponents"][0]
    o.update(wins=0, ties=200, losses=0, win_rate=0.5, decisive_win_rate=None, wilson_ci=None)
    o["bootstrap_ci"].update(low=0.5, high=0.5)
    validate_submission(data)
    o["decisive_win_rate"] = 0.5
    with pytest.raises(SubmissionError, match=r"opponents\[0\]\.decisive_win_rate: must be null"):
        validate_submission(data)


# ------------------------------------------------------------------------------------------------ building


def test_build_write_and_load(tmp_path):
    out = tmp_path / "run"
    (out / "hpsv2").mkdir(parents=True)
    (out / "hpsv2" / "items.jsonl").write_text(
        '{"style": "anime", "index": 0, "hpsv2": 30.0}\n', encoding="utf-8"
    )
    model = {  # what evaluate.images.generate_images returns
        "id": "tiny-sd15",
        "revision": None,
        "steps": 2,
        "guidance_scale": 7.5,
        "seed_rule": "derive_seed(0, relative path, 0)",
        "pipeline": "StableDiffusionPipeline",
        "scheduler": "PNDMScheduler",
        "dtype": "torch.float32",
        "height": 64,
        "width": 64,
    }
    styles = {
        s: {"mean": 30.0, "std": 0.0, "n_images": 1} for s in ("anime", "concept-art", "paintings", "photo")
    }
    entry = {
        "metric_version": "v2.0",
        "evaluators": {"reward_model": "xswu/HPSv2"},
        "n": 4,
        "summary": {
            "checkpoint": "HPS_v2_compressed.pt",
            "antialias": True,
            "styles": styles,
            "average": 30.0,
        },
        "results": out / "hpsv2" / "items.jsonl",
    }
    sub = build_submission(model, {"hpsv2": entry}, out, device="cpu")
    assert sub["model"]["resolution"] == {"height": 64, "width": 64}
    assert sub["model"]["seeds"] == {"rule": "derive_seed(0, relative path, 0)"}
    assert sub["model"]["dtype"] == "float32"
    assert sub["environment"]["device"] == "cpu" and sub["environment"]["visionprefer"]
    assert sub["benchmarks"]["hpsv2"]["results"]["path"] == "hpsv2/items.jsonl"
    path = write_submission(sub, out / "submission.json")
    assert load_submission(path) == sub

    with pytest.raises(SubmissionError, match=r"benchmarks\.hpsv2\.results\.path: .* is outside"):
        build_submission(
            model, {"hpsv2": {**entry, "results": tmp_path / "elsewhere.jsonl"}}, out, device="cpu"
        )
    with pytest.raises(SubmissionError, match=r"^model\.pipeline: must be a string, got null"):
        build_submission({**model, "pipeline": None}, {"hpsv2": entry}, out, device="cpu")


# ------------------------------------------------------------------------------------------------- rendering


def hps_submission(folder: Path, name: str, model_id: str, version: str, means: list[float], **extra) -> Path:
    data = example()
    data["model"]["id"] = model_id
    entry = data["benchmarks"]["hpsv2"]
    entry["metric_version"] = version
    s = entry["summary"]
    s["checkpoint"] = "HPS_v2.1_compressed.pt" if version == "v2.1" else "HPS_v2_compressed.pt"
    for style, mean in zip(("anime", "concept-art", "paintings", "photo"), means, strict=True):
        s["styles"][style]["mean"] = mean
    s["average"] = sum(means) / 4
    s.update(extra)
    return write(folder, data, name)


@pytest.fixture
def board(folder) -> Path:
    (folder / "submission.json").unlink()
    hps_submission(
        folder,
        "a.json",
        "org/alpha",
        "v2.1",
        [30.0, 30.0, 30.0, 30.0],
        average_ci={
            "low": 29.8,
            "high": 30.2,
            "level": 0.95,
            "method": "bootstrap-percentile",
            "n_resamples": 1000,
        },
    )
    hps_submission(folder, "b.json", "org/beta", "v2.1", [31.0, 31.0, 31.0, 31.0])
    hps_submission(folder, "c.json", "org/<script>alert(1)</script>|x", "v2.1", [30.0, 30.0, 30.0, 30.0])
    hps_submission(folder, "d.json", "org/delta", "v2.0", [27.0, 27.0, 27.0, 27.0])
    no_hps = example()
    del no_hps["benchmarks"]["hpsv2"]
    write(folder, no_hps, "e.json")
    return folder


def _rows(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_render_ranks_and_separates_versions(board):
    markdown, page = render_leaderboard(board, benchmark="hpsv2")
    assert markdown.index("## HPS v2.0: average") < markdown.index("## HPS v2.1: average")
    v21 = _rows(markdown, "HPS v2.1: average")
    assert [(r[0], r[-1]) for r in v21] == [
        ("1", "b.json"),
        ("2", "c.json"),
        ("2", "a.json"),
    ]  # a tie shares a rank, ordered by model id
    assert [r[3] for r in v21] == ["31.00", "30.00", "30.00"]
    v20 = _rows(markdown, "HPS v2.0: average")
    assert [(r[0], r[1], r[-1]) for r in v20] == [("1", "org/delta@462165984030", "d.json")]
    assert "Not ranked: e.json (no hpsv2 entry)." in markdown
    assert "<h2>HPS v2.0: average</h2>" in page and "<h2>HPS v2.1: average</h2>" in page
    assert "e.json (no hpsv2 entry)" in page


def test_render_formats_cis(board):
    markdown, page = render_leaderboard(board, benchmark="hpsv2")
    header = markdown.split("## HPS v2.1: average\n", 1)[1].split("\n| ", 1)[1]
    assert header.startswith("Rank | Model | Settings | average | 95% CI (bootstrap-percentile) | anime |")
    rows = _rows(markdown, "HPS v2.1: average")
    assert [r[4] for r in rows] == ["–", "–", "[29.80, 30.20]"]
    assert "<td>[29.80, 30.20]</td>" in page
    assert '<th scope="col">95% CI (bootstrap-percentile)</th>' in page


def test_render_escapes_model_ids(board):
    markdown, page = render_leaderboard(board, benchmark="hpsv2")
    for text in (markdown, page):
        assert "<script" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "org/&lt;script&gt;alert(1)&lt;/script&gt;\\|x@" in markdown  # the pipe does not split the cell
    assert all(len(r) == 11 for r in _rows(markdown, "HPS v2.1: average"))
    assert (
        page.startswith("<!DOCTYPE html>")
        and "src=" not in page
        and "href=" not in page
        and "<link" not in page
    )


def test_render_other_benchmarks(board):
    markdown, _ = render_leaderboard(board, benchmark="winrate", metric="decisive_win_rate")
    rows = _rows(markdown, "Win rate against stabilityai/stable-diffusion-2-1: decisive_win_rate (metric v1)")
    assert len(rows) == 5 and {r[4] for r in rows} == {"[0.589, 0.730]"}
    assert "95% CI (wilson)" in markdown
    markdown, _ = render_leaderboard(board, benchmark="score", metric="pickscore")
    assert "## pickscore score (metric v1)" in markdown and "yuvalkirstain/PickScore\\_v1" not in markdown
    markdown, _ = render_leaderboard(board, benchmark="tifa", metric="counting")
    assert [r[3] for r in _rows(markdown, "TIFA v1.0: counting")] == ["0.610"] * 5
    markdown, _ = render_leaderboard(board, benchmark="tifa", metric="food")
    assert (
        "No submission has this benchmark metric." in markdown and "(no food in its tifa entry)" in markdown
    )


def test_render_rejects_invalid_files_and_arguments(board):
    bad = example()
    bad["benchmarks"]["hpsv2"]["summary"]["average"] = 40.0
    write(board, bad, "zz.json")
    with pytest.raises(SubmissionError) as info:
        render_leaderboard(board)
    assert str(info.value).startswith("1 of 6 submissions are invalid, nothing rendered: zz.json: ")
    assert "benchmarks.hpsv2.summary.average: 40 is not the mean" in str(info.value)
    (board / "zz.json").unlink()
    with pytest.raises(ConfigError, match="unknown hpsv2 metric 'median'; choose from average, anime"):
        render_leaderboard(board, metric="median")
    with pytest.raises(ConfigError, match="unknown benchmark 'geneval'"):
        render_leaderboard(board, benchmark="geneval")
    with pytest.raises(SubmissionError, match="no submission files"):
        render_leaderboard(board / "results")


def test_render_takes_a_list_of_files(board):
    markdown, _ = render_leaderboard([board / "b.json", board / "d.json"])
    assert "b.json" in markdown and "d.json" in markdown and "a.json" not in markdown


def test_entries_from_the_statistics_module_validate(tmp_path):
    from visionprefer.evaluate import stats
    from visionprefer.leaderboard import bradley_terry_ratings, opponent_entry

    outcomes = [1] * 21 + [0] * 7 + [-1] * 12
    summary = stats.win_rate_summary(outcomes, n_bootstrap=1000, seed=0)
    # The shape stats.bradley_terry returns (its fit imports scikit-learn, seconds this file need not spend).
    ratings = {
        "mine": stats.ModelRating(1031.5, 1004.2, 1060.8, 31),
        "sd21": stats.ModelRating(1012.0, 985.5, 1040.1, 19),
        "sd15": stats.ModelRating(956.5, 930.0, 981.7, 36),
    }
    (tmp_path / "items.jsonl").write_text("{}\n", encoding="utf-8")
    data = example()
    data["benchmarks"] = {
        "winrate": {
            "metric_version": "v1",
            "evaluators": {"scorer": "yuvalkirstain/PickScore_v1"},
            "n": 40,
            "summary": {"tie_tolerance": 0.1, "opponents": [opponent_entry("sd15", summary)]},
            "results": "items.jsonl",
        },
        "bradley_terry": {
            "metric_version": "v1",
            "evaluators": {"judge": "gpt-4o-2024-08-06"},
            "n": 43,
            "summary": {
                "model_name": "mine",
                "ratings": bradley_terry_ratings(ratings, confidence=0.95, n_bootstrap=50),
            },
            "results": "items.jsonl",
        },
    }
    sub = build_submission(data["model"], data["benchmarks"], tmp_path, device="cpu")
    o = sub["benchmarks"]["winrate"]["summary"]["opponents"][0]
    assert (o["wins"], o["ties"], o["losses"], o["win_rate"]) == (21, 7, 12, 0.6125)
    assert o["wilson_ci"]["method"] == "wilson" and o["bootstrap_ci"]["n_resamples"] == 1000
    ci = sub["benchmarks"]["bradley_terry"]["summary"]["ratings"]["mine"]["ci"]
    assert ci == {
        "low": 1004.2,
        "high": 1060.8,
        "level": 0.95,
        "method": "bootstrap-percentile",
        "n_resamples": 50,
    }
