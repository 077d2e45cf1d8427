"""The judge against servers we did not script answer by answer: one that answers random instances of each
request's own JSON schema (drawn by hypothesis-jsonschema), and one that mixes in the faults of a real API.

Every image must end valid or failed with a failure kind; nothing valid may be thrown away; ``status`` must
count every kind of every stage as the failure logs do.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from visionprefer.annotate.stage import load_feedback
from visionprefer.build import build, open_run
from visionprefer.config import ASPECTS, load_config
from visionprefer.errors import FAILURE_KINDS
from visionprefer.rundir import read_jsonl
from visionprefer.status import format_status, run_status

from .conftest import write_config


def _judge_config(
    tmp_path: Path,
    base_url: str,
    prompts: list[str],
    *,
    judge: str = "",
    generators: str = "[{preset: tiny-sd15}, {preset: tiny-sd21}]",
    scales: str = "[3.0, 7.5]",
    llm: dict | None = None,
) -> Path:
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    settings = {"concurrency": 8, "timeout_s": 2, "backoff_s": 0.01, **(llm or {})}
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    return write_config(
        tmp_path,
        f"""\
run_dir: {tmp_path / "run"}
prompts: {{sources: [{{path: prompts.txt}}]}}
generate: {{generators: {generators}, guidance_scales: {scales}, batch_size: 64}}
annotate:
  backend: judge
  judge:
    image_max_side: 32
{judge}    llm:
      model: gpt-4o-2024-08-06
      base_url: {base_url}
{lines}""",
    )


PROMPTS = [f"{n} red apples and a cat on a table, picture {i}" for i, n in enumerate(["two", "three"] * 4)]


@pytest.mark.parametrize("group", ["group_size: 1", "default grouping"])
def test_random_schema_instances_are_all_accepted(tmp_path, fake_llm, group):
    server = fake_llm(responder="schema_random")
    judge = "    group_size: 1\n" if group == "group_size: 1" else ""
    # hypothesis takes seconds for its first draws from a new schema: a generous timeout, so that no request
    # is sent twice
    cfg = load_config(_judge_config(tmp_path, server.base_url, PROMPTS, judge=judge, llm={"timeout_s": 120}))
    report = build(cfg, progress=False)
    ann = report.stages["annotate"]
    groups = len(PROMPTS) * (4 if judge else 1)
    assert (ann.planned, ann.made, ann.failed) == (groups, groups, 0)
    # One answer per group: nothing was re-asked (a re-ask would mean an answer was refused).
    chats = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == groups
    run = open_run(cfg)
    feedback = load_feedback(cfg, run)
    assert len(feedback) == len(PROMPTS) * 4
    records = [
        r for path in sorted((run.root / "annotate").glob("done-rank*.jsonl")) for r in read_jsonl(path)
    ]
    cache = {
        r["key"]: json.loads(r["text"])
        for r in read_jsonl(run.llm_dir / "responses-rank0.jsonl")
        if r.get("text")
    }
    assert len(cache) == groups
    answers = list(cache.values())
    for rec in records:
        n = len(rec["image_ids"])
        ranks = sorted(r["rank"] for r in rec["results"].values())
        assert ranks == list(range(1, n + 1))  # settled into a permutation, whatever the model said
        for r in rec["results"].values():
            assert r["stated_rank"] in range(1, n + 1)
            for a in ASPECTS:
                assert r[a]["score"] in {1.0, 2.0, 3.0, 4.0, 5.0}
                assert isinstance(r[a]["explanation"], str)  # kept as the model wrote it, even when empty
        assert rec["rank_consistent"] is (not rec["rank_issues"])
    # The scores stored are the scores answered (the product is never replaced by a repair).
    stored = sorted(
        (r[a]["score"], r[a]["explanation"])
        for rec in records
        for r in rec["results"].values()
        for a in ASPECTS
    )
    given = sorted(
        (float(img[a]["score"]), img[a]["explanation"].strip())
        for ans in answers
        for img in ans.values()
        for a in ASPECTS
    )
    assert stored == given
    st = run_status(run.root)["stages"]["annotate"]
    assert (st["done"], st["failed"], st["failures_by_kind"]) == (groups, 0, {})


def test_fault_mix_over_a_thousand_calls(tmp_path, fake_llm):
    """10% 429 with Retry-After, 5% 500, 3% timeouts, 5% malformed JSON, 2% refusals over 1,000 groups."""
    server = fake_llm(
        responder="judge",
        faults="429:0.10,500:0.05,timeout:0.03,badcontent:0.05,refusal:0.02",
        timeout_sleep=2.5,
        fault_seed="mix",
    )
    prompts = [f"a photo of {i % 9 + 1} cats and a dog, scene {i}" for i in range(250)]
    cfg = load_config(
        _judge_config(
            tmp_path,
            server.base_url,
            prompts,
            judge="    group_size: 1\n",
            llm={"concurrency": 32, "timeout_s": 1, "max_attempts": 3},
        )
    )
    report = build(cfg, progress=False)
    ann = report.stages["annotate"]
    assert ann.planned == 1000 and ann.made + ann.failed == 1000
    run = open_run(cfg)
    done = [r for p in sorted((run.root / "annotate").glob("done-rank*.jsonl")) for r in read_jsonl(p)]
    failed = [r for p in sorted((run.root / "annotate").glob("failed-rank*.jsonl")) for r in read_jsonl(p)]
    done_ids = [r["annotation_id"] for r in done]
    assert len(done_ids) == len(set(done_ids)) == ann.made  # no duplicates
    failed_ids = {r["annotation_id"] for r in failed}
    assert not failed_ids & set(done_ids)
    assert len(failed_ids) == ann.failed and len(failed) == ann.failed
    # Every failure has a kind from the vocabulary and its raw answer where one came back.
    assert all(r["failure_kind"] in FAILURE_KINDS for r in failed)
    kinds = Counter(r["failure_kind"] for r in failed)
    assert set(kinds) <= {"invalid_json", "refusal", "rate_limited", "server_error", "timeout"}
    for r in failed:
        if r["failure_kind"] == "invalid_json":
            assert r["raw"] and r["kind"] == "permanent"
    # Faults did happen, and most were retried into valid answers.
    seen = Counter(r["fault"] for r in server.requests() if r["path"].endswith("/chat/completions"))
    assert seen["429"] > 50 and seen["500"] > 20 and seen["timeout"] > 10
    assert seen["badcontent"] > 20 and seen["refusal"] > 5
    assert ann.made >= 950
    # status counts per kind equal the failure logs, in the JSON and in the text.
    st = run_status(run.root)
    row = st["stages"]["annotate"]
    assert {k: v["count"] for k, v in row["failures_by_kind"].items()} == dict(kinds)
    assert row["failed"] == ann.failed and row["done"] == ann.made
    text = format_status(st)
    for kind, n in kinds.items():
        assert f"{n} × {kind}" in text


def test_status_lists_every_failure_kind_of_every_stage(tmp_path, fake_llm):
    """Failures of several kinds in two stages: the prompts stage (polishing) and the judge."""
    polish = fake_llm(responder="polish", faults="refusal:0.3,garbage:0.3", fault_seed="p")
    judge = fake_llm(responder="judge", faults="badcontent:0.35,400:0.2,out_of_range:0.2", fault_seed="j")
    prompts = [f"a small {c} house next to a tree number {i}" for i, c in enumerate(["red", "blue"] * 6)]
    path = _judge_config(
        tmp_path,
        judge.base_url,
        prompts,
        generators="[{preset: tiny-sd15}]",
        scales="[5.0]",
        judge="    group_size: 1\n",
    )
    text = path.read_text().replace(
        "prompts: {sources: [{path: prompts.txt}]}",
        "prompts:\n  sources: [{path: prompts.txt}]\n  polish:\n    enabled: true\n"
        f"    llm: {{model: gpt-4o-mini, base_url: {polish.base_url}, backoff_s: 0.01, invalid_retries: 0}}",
    )
    path.write_text(text)
    cfg = load_config(path)
    build(cfg, progress=False)
    run = open_run(cfg)
    st = run_status(run.root)
    prompts_kinds = st["stages"]["prompts"]["failures_by_kind"]
    annotate_kinds = st["stages"]["annotate"]["failures_by_kind"]
    rejected = [r for r in read_jsonl(run.rejected_file) if r["kind"] == "failed"]
    assert {k: v["count"] for k, v in prompts_kinds.items()} == dict(
        Counter(r["failure_kind"] for r in rejected)
    )
    failed = [r for p in sorted((run.root / "annotate").glob("failed-rank*.jsonl")) for r in read_jsonl(p)]
    assert {k: v["count"] for k, v in annotate_kinds.items()} == dict(
        Counter(r["failure_kind"] for r in failed)
    )
    all_kinds = set(prompts_kinds) | set(annotate_kinds)
    assert len(all_kinds) >= 4, all_kinds  # e.g. refusal, schema (polish), invalid_json, bad_request, schema
    for row in (*prompts_kinds.values(), *annotate_kinds.values()):
        assert row["example"]  # one example reason per kind
    out = format_status(st)
    for kind, row in (*prompts_kinds.items(), *annotate_kinds.items()):
        assert f"{row['count']} × {kind}" in out
    as_json = json.loads(json.dumps(st))
    assert as_json["stages"]["annotate"]["failures_by_kind"] == annotate_kinds


def test_an_unreadable_image_fails_its_group_only(tmp_path, fake_llm):
    server = fake_llm(responder="judge")
    cfg = load_config(_judge_config(tmp_path, server.base_url, PROMPTS[:3], judge="    group_size: 1\n"))
    from visionprefer.build import run_stage

    for stage in ("prompts", "generate"):
        run_stage(cfg, stage, progress=False)
    run = open_run(cfg)
    broken = sorted((run.root / "images").rglob("*.png"))[0]
    broken.write_bytes(b"not a png")
    report = run_stage(cfg, "annotate", progress=False)
    assert (report.made, report.failed) == (11, 1)
    st = run_status(run.root)["stages"]["annotate"]
    assert st["failures_by_kind"]["image_unreadable"]["count"] == 1
