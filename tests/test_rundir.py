from __future__ import annotations

import json

from visionprefer.rundir import StageLog, append_jsonl, atomic_write_text, read_jsonl


def test_append_recovers_from_torn_line(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"k": "a"}])
    with open(path, "ab") as f:  # a crash in the middle of a write
        f.write(b'{"k": "b", "tor')
    assert [r["k"] for r in read_jsonl(path)] == ["a"]
    append_jsonl(path, [{"k": "c"}])
    assert [r["k"] for r in read_jsonl(path)] == ["a", "c"]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["x.txt"]


def test_stage_log_union_of_ranks_and_failure_kinds(tmp_path):
    a, b = StageLog(tmp_path, "id", rank=0), StageLog(tmp_path, "id", rank=1)
    a.record_done([{"id": "x", "v": 1}])
    b.record_done([{"id": "y", "v": 2}])
    b.record_failed(["z"], reason="boom", kind="transient")
    a.record_failed(["w"], reason="bad input", kind="permanent")
    a.record_failed(["w"], reason="bad input again", kind="permanent")
    b.record_failed(["x"], reason="late failure of a done item", kind="transient")
    st = a.state()
    assert set(st.done) == {"x", "y"}
    assert set(st.failed) == {"z", "w"}
    assert st.failed["w"]["attempts"] == 2 and st.failed["w"]["reason"] == "bad input again"
    assert st.blocked(retry_failed=False) == {"w"}
    assert st.blocked(retry_failed=True) == set()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "done-rank0.jsonl",
        "done-rank1.jsonl",
        "failed-rank0.jsonl",
        "failed-rank1.jsonl",
    ]
    assert json.loads((tmp_path / "done-rank1.jsonl").read_text())["id"] == "y"
