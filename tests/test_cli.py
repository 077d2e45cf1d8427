"""The CLI: one library call per subcommand; user errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json

import pytest

from visionprefer.cli import main

from .conftest import write_config


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, needle):
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("visionprefer: error: ") and needle in lines[0], lines[0]


def test_build_status_estimate(capsys, small_build, tmp_path):
    cfg = small_build(generators=("tiny-sd15",))
    code, out, err = _run(capsys, "estimate", str(cfg), "--json")
    assert code == 0
    est = json.loads(out)
    assert (est["prompts"], est["images"], est["images_remaining"]) == (5, 10, 10)
    assert est["generators"]["tiny-sd15"]["gpu_hours"] == pytest.approx(10 / 1800, abs=1e-3)

    code, out, err = _run(capsys, "build", str(cfg), "--quiet")
    assert (code, out) == (0, "")

    code, out, _ = _run(capsys, "status", str(tmp_path / "run"), "--json")
    st = json.loads(out)["stages"]
    assert (st["prompts"]["done"], st["generate"]["done"], st["generate"]["pending"]) == (5, 10, 0)
    code, out, _ = _run(capsys, "status", str(tmp_path / "run"))
    assert code == 0 and "generate" in out and "tiny-sd15: 10/10" in out

    code, out, _ = _run(capsys, "estimate", str(cfg), "--json")
    assert json.loads(out)["images_remaining"] == 0


def test_out_overrides_and_config_is_snapshotted_without_env(capsys, small_build, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    cfg = small_build(generators=("tiny-sd15",))
    code, _, _ = _run(capsys, "prompts", str(cfg), "--out", str(tmp_path / "other"), "-q")
    assert code == 0
    snap = (tmp_path / "other" / "config.yaml").read_text()
    assert "fingerprint" in snap and str(tmp_path / "other") in snap
    for path in (tmp_path / "other").rglob("*"):
        if path.is_file():
            assert "sk-test-secret-value" not in path.read_text(errors="replace")
    assert not (tmp_path / "other" / "generate").exists()  # one stage, nothing downstream


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("run_dir: x\nprompts: [\n", "YAML syntax error at line"),
        (
            "run_dir: x\nbogus: 1\n",
            "bogus: unknown key; valid keys here: run_dir, prompts, generate, annotate, pairs, publish, estimate, prices",
        ),
        (
            "run_dir: x\nprompts: {sources: [{path: p.txt}]}\ngenerate: {generators: [{preset: sd3}]}\n",
            "unknown preset 'sd3'",
        ),
        (
            "run_dir: 5\nprompts: {sources: [{path: p.txt}]}\ngenerate: {generators: [{preset: sd15}]}\n",
            "run_dir: expected a string, got int 5",
        ),
    ],
)
def test_bad_config_is_one_line(capsys, tmp_path, body, needle):
    code, _, err = _run(capsys, "build", str(write_config(tmp_path, body)))
    _assert_one_line_error(code, err, needle)


def test_missing_config_file(capsys, tmp_path):
    code, _, err = _run(capsys, "build", str(tmp_path / "missing.yaml"))
    _assert_one_line_error(code, err, "config file not found")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "no prompts in this source (the file is empty)"),
        (b"  \n\t\n", "no prompts in this source (only blank lines)"),
    ],
)
def test_unusable_prompt_file_keeps_finished_work(capsys, small_build, tmp_path, content, needle):
    cfg = small_build(generators=("tiny-sd15",))
    assert _run(capsys, "build", str(cfg), "-q")[0] == 0
    kept = (tmp_path / "run" / "prompts" / "prompts.jsonl").read_bytes()
    images = sorted((tmp_path / "run" / "images").rglob("*.png"))
    (tmp_path / "prompts.txt").write_bytes(content)
    code, _, err = _run(capsys, "build", str(cfg))
    _assert_one_line_error(code, err, needle)
    assert (tmp_path / "run" / "prompts" / "prompts.jsonl").read_bytes() == kept
    assert sorted((tmp_path / "run" / "images").rglob("*.png")) == images


def test_csv_without_column_is_one_line(capsys, tmp_path):
    (tmp_path / "p.csv").write_text("Prompts,Category\na cat,x\n")
    cfg = write_config(
        tmp_path,
        f"run_dir: {tmp_path / 'r'}\nprompts: {{sources: [{{path: p.csv, column: Prompt}}]}}\n"
        "generate: {generators: [{preset: tiny-sd15}]}\n",
    )
    code, _, err = _run(capsys, "prompts", str(cfg))
    _assert_one_line_error(code, err, "no column 'Prompt'; columns are: Prompts, Category")


def test_bad_prompt_lines_are_recorded_not_fatal(capsys, tmp_path):
    (tmp_path / "p.txt").write_bytes(
        b"a good prompt\nnul\x00byte\nbad \xff utf8\n" + b"y" * (1 << 20) + b"\n"
    )
    cfg = write_config(
        tmp_path,
        f"run_dir: {tmp_path / 'r'}\nprompts: {{sources: [{{path: p.txt}}]}}\n"
        "generate: {generators: [{preset: tiny-sd15}], guidance_scales: [5]}\n",
    )
    code, _, err = _run(capsys, "build", str(cfg), "-q")
    assert code == 0 and "Traceback" not in err
    code, out, _ = _run(capsys, "status", str(tmp_path / "r"), "--json")
    st = json.loads(out)["stages"]["prompts"]
    assert (st["done"], st["failed"], st["filtered"]) == (1, 2, 1)
    assert set(st["reasons"]) == {"contains a NUL byte", "not valid UTF-8", "over-long"}


def test_status_of_non_run_dir(capsys, tmp_path):
    code, _, err = _run(capsys, "status", str(tmp_path))
    _assert_one_line_error(code, err, "not a visionprefer run directory")
    code, _, err = _run(capsys, "status", str(tmp_path / "nothing"))
    _assert_one_line_error(code, err, "run directory not found")


def test_refuses_to_write_into_a_foreign_folder(capsys, small_build, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    code, _, err = _run(capsys, "build", str(small_build()), "--out", str(foreign))
    _assert_one_line_error(code, err, "is not a visionprefer run directory; choose another --out")
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


def test_unloadable_model_is_one_line(capsys, small_build, tmp_path):
    cfg = small_build(generators=())
    cfg.write_text(
        cfg.read_text().replace("  generators:\n", "  generators:\n    - model: nobody/no-such-model\n")
    )
    code, _, err = _run(capsys, "build", str(cfg))
    _assert_one_line_error(code, err, "cannot load generator 'custom' from nobody/no-such-model")


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, visionprefer, visionprefer.cli; print(sorted(m for m in ('torch','diffusers','transformers','datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
