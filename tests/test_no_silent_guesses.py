"""Bad inputs are said, not guessed around: a missing configured column, nothing to score, a cost that
would print as $0.00, a hint that cannot be pasted, a garbled error message."""

from __future__ import annotations

import json
import logging
import shlex

import pytest

from visionprefer.cli import main
from visionprefer.config import SourceConfig
from visionprefer.errors import SourceError
from visionprefer.prompts.sources import RawPrompt, read_source

from .conftest import write_config


def _read(tmp_path, name, text, column=None):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return list(read_source(SourceConfig(path=str(path), column=column), path))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.jsonl", '{"caption": "a cat", "id": 1}\n{"caption": "a dog", "id": 2}\n'),
        ("p.json", json.dumps([{"caption": "a cat", "id": 1}, {"caption": "a dog", "id": 2}])),
        ("p.csv", "caption,id\na cat,1\na dog,2\n"),
    ],
)
def test_a_missing_configured_column_is_an_error_naming_the_columns_found(tmp_path, caplog, name, text):
    with pytest.raises(SourceError, match=r"no (column|key) 'prompt_text'.*: caption, id"):
        _read(tmp_path, name, text, column="prompt_text")
    # Without a configured column the fallback is taken and said once for the whole source.
    with caplog.at_level(logging.WARNING, logger="visionprefer"):
        items = _read(tmp_path, name, text)
    assert [i.text for i in items if isinstance(i, RawPrompt)] == ["a cat", "a dog"]
    notes = [r.getMessage() for r in caplog.records if "no `column` configured" in r.getMessage()]
    assert len(notes) == 1 and "'caption'" in notes[0]


def test_eval_score_with_no_image_scored_is_an_error(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a cat\na dog\na car\n")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "00000.png").write_bytes(b"")  # zero bytes: skipped
    code = main(
        ["eval", "score", "--prompts", str(tmp_path / "p.txt"), "--images", str(tmp_path / "imgs"),
         "--metrics", "clip", "--clip-model", "tiny-clip", "--out", str(tmp_path / "out"), "-q"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("visionprefer: error: eval score: none of the 3 images")
    assert not (tmp_path / "out" / "score_summary.json").exists()


def test_estimate_never_prints_zero_dollars_for_a_cost():
    from visionprefer.estimate import format_estimate, format_usd, round_usd

    assert round_usd(0.00004) > 0 and round_usd(0.0) == 0.0 and round_usd(1.23456) == 1.2346
    assert (format_usd(0.0), format_usd(0.004), format_usd(0.0123)) == ("$0.00", "<$0.01", "$0.01")
    est = {
        "prompts": 1,
        "prompts_rejected": 0,
        "images": 1,
        "pipeline_calls": 1,
        "images_remaining": 1,
        "gpu_hours": 0.0,
        "gpu_hours_remaining": 0.0,
        "generators": {},
        "llm": {"polish": {"calls": 3, "input_tokens": 30, "output_tokens": 9, "usd": round_usd(0.00004)}},
    }
    text = format_estimate(est)
    assert "<$0.01" in text and "$0.00" not in text


def test_the_status_hint_quotes_the_run_directory(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a cat\n")
    run_dir = tmp_path / "my runs" / "first build"
    cfg = write_config(
        tmp_path, f"run_dir: '{run_dir}'\nprompts: {{sources: [{{path: p.txt}}]}}\n"
        "generate: {generators: [{preset: tiny-sd15}]}\n"
    )  # fmt: skip
    assert main(["prompts", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"`visionprefer status {shlex.quote(str(run_dir))}`" in out
    assert shlex.split(shlex.quote(str(run_dir))) == [str(run_dir)]


def test_a_truncated_tifa_file_error_reads_once(tmp_path):
    from visionprefer.evaluate.tifa import read_json_file

    path = tmp_path / "qa.json"
    path.write_bytes(b'[{"id": "a", "question": "is it')
    with pytest.raises(SourceError) as e:
        read_json_file(path)
    message = str(e.value)
    assert " at at" not in message and "at line 1 column" in message and "Unterminated string" in message
