from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from visionprefer.config import load_config
from visionprefer.errors import SourceError
from visionprefer.keys import prompt_key
from visionprefer.prompts import clean_text, collect_prompts

from .conftest import write_config


def _config(tmp_path, source: str, extra: str = ""):
    body = (
        f"run_dir: {tmp_path / 'run'}\nprompts:\n  sources:\n    - {source}\n{extra}"
        "generate:\n  generators:\n    - preset: tiny-sd15\n"
    )
    return load_config(write_config(tmp_path, body))


def _texts(result):
    return [r["prompt"] for r in result.kept]


def test_txt_cleaning_dedup_and_records(tmp_path):
    (tmp_path / "p.txt").write_bytes(
        b"\xef\xbb\xbf  a  red\tcar  \r\n\n   \na red car\na blue car\n"
        + b"a NUL\x00 here\n"
        + b"caf\xe9 au lait\n"
    )
    result = collect_prompts(_config(tmp_path, "path: p.txt"))
    assert _texts(result) == ["a red car", "a blue car"]
    first = result.kept[0]
    assert first["original"] == "  a  red\tcar  "
    assert first["prompt_id"] == prompt_key("p.txt", "  a  red\tcar  ")
    assert first["source_index"] == 0 and first["polish_model"] is None and first["safety"] == "ok"
    reasons = {r["source_index"]: (r["kind"], r["reason"]) for r in result.rejected}
    assert reasons[1] == ("filtered", "empty")
    assert reasons[2] == ("filtered", "empty")
    assert reasons[3] == ("filtered", f"duplicate of {first['prompt_id']}")
    assert reasons[5] == ("failed", "contains a NUL byte")
    assert reasons[6] == ("failed", "not valid UTF-8 (byte 0xe9 at offset 3)")
    assert result.counts() == {"kept": 2, "filtered": 3, "failed": 2}


def test_over_long_line_is_a_recorded_drop(tmp_path):
    (tmp_path / "p.txt").write_text("ok prompt\n" + "x" * 1_000_000 + "\n", encoding="utf-8")
    result = collect_prompts(_config(tmp_path, "path: p.txt"))
    assert _texts(result) == ["ok prompt"]
    (rej,) = result.rejected
    assert rej["reason"] == "over-long (1000000 chars > max_chars 1000)"
    assert rej["length"] == 1_000_000 and len(rej["original"]) < 300


@pytest.mark.parametrize("content", [b"", b"   \n\t\n  \n"])
def test_empty_or_blank_file_is_one_clear_error(tmp_path, content):
    (tmp_path / "p.txt").write_bytes(content)
    with pytest.raises(SourceError) as info:
        collect_prompts(_config(tmp_path, "path: p.txt"))
    assert "p.txt" in str(info.value) and "\n" not in str(info.value)


def test_all_formats_and_columns(tmp_path):
    prompts = ["a cat", "a dog", "a bird"]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"prompt": p, "x": 1}) for p in prompts) + "\n")
    (tmp_path / "b.json").write_text(json.dumps([{"id": i, "prompt": p} for i, p in enumerate(prompts)]))
    (tmp_path / "c.json").write_text(json.dumps(prompts))
    (tmp_path / "d.tsv").write_text("Prompt\tCategory\n" + "".join(f"{p}\tAnimals\n" for p in prompts))
    (tmp_path / "e.csv").write_text('Prompts,Category\n"a cat, sleeping",Animals\na dog,Animals\n')
    pq.write_table(pa.table({"caption": prompts, "n": [1, 2, 3]}), tmp_path / "f.parquet")
    (tmp_path / "g.csv").write_text("text,my_col\nignored,a fish\nignored,a frog\n")
    expected = {
        "path: a.jsonl": prompts,
        "path: b.json": prompts,
        "path: c.json": prompts,
        "path: d.tsv": prompts,  # PartiPrompts layout: the "Prompt" column is found by default
        "path: e.csv": ["a cat, sleeping", "a dog"],  # DrawBench layout: "Prompts"
        "path: f.parquet": prompts,
        "{path: g.csv, column: my_col}": ["a fish", "a frog"],
    }
    for source, texts in expected.items():
        assert _texts(collect_prompts(_config(tmp_path, source))) == texts, source


def test_csv_without_named_column(tmp_path):
    (tmp_path / "p.csv").write_text("Prompts,Category\na,b\n")
    with pytest.raises(SourceError, match=r"no column 'prompt_text'; columns are: Prompts, Category"):
        collect_prompts(_config(tmp_path, "{path: p.csv, column: prompt_text}"))


def test_parquet_without_named_column(tmp_path):
    pq.write_table(pa.table({"a": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(SourceError, match=r"no prompt column found .* set `column` to one of: a"):
        collect_prompts(_config(tmp_path, "path: p.parquet"))


def test_jsonl_bad_lines_fail_alone(tmp_path):
    (tmp_path / "p.jsonl").write_bytes(
        b'{"prompt": "good one"}\n{not json\n{"other": 1}\n{"prompt": 5}\n\xff\xfe\n'
    )
    result = collect_prompts(_config(tmp_path, "path: p.jsonl"))
    assert _texts(result) == ["good one"]
    reasons = [r["reason"] for r in result.rejected]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "record has no key 'prompt' (keys: other)"
    assert reasons[2] == "prompt is a int, not a string"
    assert reasons[3].startswith("not valid UTF-8")


def test_csv_non_utf8_row_fails_alone(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"prompt\nfine row\nbad \xff row\n")
    result = collect_prompts(_config(tmp_path, "path: p.csv"))
    assert _texts(result) == ["fine row"]
    assert result.rejected[0]["reason"].startswith("not valid UTF-8")


def test_missing_source_and_unknown_suffix(tmp_path):
    with pytest.raises(SourceError, match="prompt source not found"):
        collect_prompts(_config(tmp_path, "path: nope.txt"))
    (tmp_path / "p.xyz").write_text("a")
    with pytest.raises(SourceError, match="set `format`"):
        collect_prompts(_config(tmp_path, "path: p.xyz"))
    assert _texts(collect_prompts(_config(tmp_path, "{path: p.xyz, format: txt}"))) == ["a"]


def test_sampling_is_seeded_and_keeps_order(tmp_path):
    (tmp_path / "p.txt").write_text("".join(f"prompt number {i}\n" for i in range(50)))
    a = _texts(collect_prompts(_config(tmp_path, "path: p.txt", "  sample: 10\n  sample_seed: 1\n")))
    b = _texts(collect_prompts(_config(tmp_path, "path: p.txt", "  sample: 10\n  sample_seed: 1\n")))
    c = _texts(collect_prompts(_config(tmp_path, "path: p.txt", "  sample: 10\n  sample_seed: 2\n")))
    assert a == b and a != c and len(a) == 10
    assert a == sorted(a, key=lambda t: int(t.split()[-1]))


def test_limit_and_source_name_enter_keys(tmp_path):
    (tmp_path / "p.txt").write_text("one\ntwo\nthree\n")
    r1 = collect_prompts(_config(tmp_path, "{path: p.txt, limit: 2}"))
    r2 = collect_prompts(_config(tmp_path, "{path: p.txt, name: other}"))
    assert _texts(r1) == ["one", "two"]
    assert r1.kept[0]["prompt_id"] != r2.kept[0]["prompt_id"]
    assert r2.kept[0]["source"] == "other"


def test_clean_text():
    assert clean_text(" a\u00a0 b\n c ") == "a b c"
    assert clean_text("e\u0301") == "\u00e9"
