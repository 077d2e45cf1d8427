"""Batch API spend accounting: the budget reserves what `estimate` predicts, unreadable output lines are
kept with their text, and an answer's usage survives a crash at every commit point (online and batch)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from visionprefer.build import build
from visionprefer.config import LLMConfig, load_config
from visionprefer.estimate import estimate_build
from visionprefer.llm import LLMClient
from visionprefer.llm.cache import ResponseCache, request_key
from visionprefer.llm.client import chat_request
from visionprefer.llm.usage import UsageLog, usage_totals
from visionprefer.rundir import read_jsonl
from visionprefer.status import format_status, run_status

from .test_annotate import _config
from .test_batch_api import SECRET, Harness, _requests

PROMPTS = [f"a photo of {n} red apples on a {c} table" for n, c in zip(range(2, 10), "ABCDEFGH", strict=True)]


def _answers_and_usage(folder: Path) -> tuple[Counter, Counter, float, float]:
    """Cache commits per key, ok usage records per key, and the dollars in each."""
    commits: Counter[str] = Counter()
    cache_usd = 0.0
    for path in sorted(folder.glob("responses-rank*.jsonl")):
        for entry in read_jsonl(path):
            commits[entry["key"]] += 1
            cache_usd += entry["usd"]
    ok: Counter[str] = Counter()
    usage_usd = 0.0
    for path in sorted(folder.glob("usage-rank*.jsonl")):
        for rec in read_jsonl(path):
            if rec["outcome"] == "ok":
                ok[rec["key"]] += 1
                usage_usd += rec["usd"]
    return commits, ok, cache_usd, usage_usd


# --------------------------------------------------------------------------------------------- budget
def test_batch_budget_at_1_2x_the_estimate_finishes_in_one_run(tmp_path, fake_llm, monkeypatch):
    """The reservation is the estimate's prediction times the margin (1.15), not the worst case: a cap at
    1.2x the estimate submits every request at once, and the actual spend stays under the cap."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(responder="judge", extra_args=["--batch-polls", "2"])
    batch = "    mode: batch\n    batch: {poll_interval_s: 0.05, max_wait_s: 30, max_requests_per_file: 3}\n"
    cfg_path = _config(tmp_path, server.base_url, prompts=PROMPTS, judge_extra=batch)
    est = estimate_build(load_config(cfg_path))["llm"]["judge"]
    assert est["calls"] == len(PROMPTS) and est["mode"] == "batch" and est["usd"] > 0
    cap = round(1.2 * est["usd"], 6)
    text = cfg_path.read_text().replace(
        "      concurrency: 4\n", f"      concurrency: 4\n      max_cost_usd: {cap}\n"
    )
    cfg_path.write_text(text)
    report = build(load_config(cfg_path), progress=False).stages["annotate"]
    assert (report.made, report.failed) == (len(PROMPTS), 0)
    creates = [r for r in server.requests() if r.get("path") == "/v1/batches" and r.get("method") == "POST"]
    assert len(creates) == 3  # 8 requests, 3 per file, all submitted by the one run
    spent = usage_totals(tmp_path / "run" / "llm")["judge"]["usd"]
    assert 0 < spent <= cap
    # The old rule (every allowed output token, 765 tokens per image) would have held back most of them.
    from visionprefer.llm.client import estimate_tokens
    from visionprefer.llm.usage import cost_usd, price_for

    cfg = load_config(cfg_path)
    lines = [r for r in server.requests() if r["path"] == "batch:/v1/chat/completions"]
    assert len(lines) == len(PROMPTS)
    worst_per_request = cost_usd(
        price_for(cfg.annotate.judge.llm.model, {}), 4 * 765, cfg.annotate.judge.llm.max_tokens, batch=True
    )
    assert worst_per_request * len(PROMPTS) > cap
    assert estimate_tokens  # the worst case still bounds each reservation (see BatchRunner.reservation)


def test_reservation_is_the_prediction_times_the_margin_never_above_the_worst_case(
    tmp_path, fake_llm, monkeypatch
):
    from visionprefer.llm.client import estimate_tokens
    from visionprefer.llm.usage import cost_usd, price_for

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "1"])
    h = Harness(tmp_path, server)
    request = _requests(h.llm, 1)[0]
    price = price_for(h.llm.model, {})
    worst = cost_usd(price, estimate_tokens(request), h.llm.max_tokens, batch=True)
    assert h.runner.reservation(request) == pytest.approx(worst)  # no prediction, no answers yet
    h.runner.predict = lambda r: (100, 50)
    assert h.runner.reservation(request) == pytest.approx(1.15 * cost_usd(price, 100, 50, batch=True))
    h.runner.predict = lambda r: (10**6, 10**6)
    assert h.runner.reservation(request) == pytest.approx(worst)
    h.close()


# --------------------------------------------------------------------------------------------- output lines
def test_unparseable_output_lines_are_recorded_with_their_text(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(faults="badline:0.25,junkline:0.1", fault_seed="3", extra_args=["--batch-polls", "1"])
    h = Harness(tmp_path, server, max_requests=40)
    requests = _requests(h.llm, 40)
    results = h.run(requests)
    lines = {
        r["custom_id"]: r["fault"] for r in server.requests() if r["path"] == "batch:/v1/chat/completions"
    }
    torn = {k for k, f in lines.items() if f == "badline"}
    junk = {k for k, f in lines.items() if f == "junkline"}
    assert torn and junk
    for key, failure in results.items():
        if key in torn:
            assert failure.kind == "permanent" and failure.failure_kind == "batch_output"
            assert (
                "not valid JSON" in failure.error and key in failure.raw and failure.raw.startswith('{"id"')
            )
        elif key in junk:  # the line names no request: every request left without a line gets its text
            assert failure.kind == "permanent" and failure.failure_kind == "batch_output"
            assert "502 Bad Gateway" in failure.raw and f"{len(junk)} line(s)" in failure.error
        else:
            assert failure is None
    errors = [r for r in h.usage.records() if r["outcome"] == "error"]
    assert {r["key"] for r in errors} == torn | junk
    assert all(r["failure_kind"] == "batch_output" and r["raw"] for r in errors)
    h.close()


def test_unparseable_batch_lines_reach_status_with_kind_and_text(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(
        responder="judge", faults="badline:0.4", fault_seed="5", extra_args=["--batch-polls", "1"]
    )
    batch = "    mode: batch\n    group_size: 1\n    batch: {poll_interval_s: 0.05, max_wait_s: 30}\n"
    cfg_path = _config(tmp_path, server.base_url, judge_extra=batch)
    report = build(load_config(cfg_path), progress=False).stages["annotate"]
    torn = sum(
        1 for r in server.requests() if r["path"] == "batch:/v1/chat/completions" and r["fault"] == "badline"
    )
    assert torn and (report.made, report.failed) == (12 - torn, torn)
    st = run_status(tmp_path / "run")["stages"]["annotate"]
    assert st["failures_by_kind"]["batch_output"]["count"] == torn
    assert st["failures_by_kind"]["batch_output"]["permanent"] == torn
    failed = list(read_jsonl(next((tmp_path / "run" / "annotate").glob("failed-rank*.jsonl"))))
    assert all(f["failure_kind"] == "batch_output" and f["raw"].startswith('{"id"') for f in failed)
    # Not sent again (the provider may have billed it) until --retry-failed.
    n = len(server.requests())
    again = build(load_config(cfg_path), progress=False).stages["annotate"]
    assert again.made == 0 and len(server.requests()) == n


# --------------------------------------------------------------------------------------------- crashes
class Crash(BaseException):
    """Stands for the process dying: nothing after the crash point runs (the files hold what was written)."""


def _crash_on(obj, name: str, call: int, *, after: bool) -> list[int]:
    """Make ``obj.name`` raise Crash on its ``call``-th call (before or after it does its work)."""
    original = getattr(obj, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call and not after:
            raise Crash(f"{name} #{call}")
        out = original(*args, **kwargs)
        if calls[0] == call and after:
            raise Crash(f"after {name} #{call}")
        return out

    setattr(obj, name, wrapped)
    return calls


FAULTS = {"faults": "429:0.2", "fault_seed": "11", "extra_args": ["--batch-polls", "1"]}


def _batch_commit_points(tmp_path, fake_llm) -> list[tuple[str, int, bool]]:
    """Every commit point of a clean batch run (on a fresh server, so the faults fall the same way each
    time): each usage record (before and after it is written, so between an answer's cache entry and its
    usage record too), each cache put, and each state-file write."""
    server = fake_llm(**FAULTS)
    h = Harness(tmp_path / "probe", server)
    counts = {
        name: _crash_on(obj, name, 0, after=False)
        for obj, name in ((h.usage, "record"), (h.cache, "put"), (h.runner, "_save_state"))
    }
    results = h.run(_requests(h.llm, 7))
    h.close()
    server.stop()
    assert any(v is not None and "HTTP 429" in v.error for v in results.values())  # an error record too
    return [
        (name, call, after)
        for name, calls in counts.items()
        for call in range(1, calls[0] + 1)
        for after in (False, True)
    ]


def test_a_crash_at_every_batch_commit_point_leaves_usage_equal_to_answers(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    points = _batch_commit_points(tmp_path, fake_llm)
    assert len(points) >= 2 * (8 + 7 + 3)  # usage records (one an error), puts, state writes of 3 batches
    owners = {"record": "usage", "put": "cache", "_save_state": "runner"}
    for i, (name, call, after) in enumerate(points):
        server = fake_llm(**FAULTS)
        root = tmp_path / f"p{i}"
        h = Harness(root, server)
        requests = _requests(h.llm, 7)
        _crash_on(getattr(h, owners[name]), name, call, after=after)
        with pytest.raises(Crash):
            h.run(requests)
        h.close()
        for _ in range(3):  # reruns until every request is answered (429 lines are retried)
            h = Harness(root, server)
            results = h.run(requests)
            h.close()
            if all(v is None for v in results.values()):
                break
        server.stop()
        where = (name, call, after)
        assert all(v is None for v in results.values()), where
        commits, ok, cache_usd, usage_usd = _answers_and_usage(root / "run" / "llm")
        assert set(commits) == {request_key(r) for r in requests} and set(commits.values()) == {1}, where
        assert ok == commits, where  # one answered record per answer, never none and never two
        assert usage_usd == pytest.approx(cache_usd), where
        errors = Counter(
            (r["key"], r.get("batch_id"))
            for r in UsageLog(root / "run" / "llm").records()
            if r["outcome"] == "error"
        )
        assert set(errors.values()) <= {1}, where  # a re-collected batch records no error twice


def test_a_crash_between_an_online_answer_and_its_usage_is_recovered(tmp_path, fake_llm):
    server = fake_llm()
    llm = LLMConfig(model="gpt-4o-mini", base_url=server.base_url, timeout_s=5)
    folder = tmp_path / "llm"
    request = chat_request(llm, [{"role": "user", "content": json.dumps({"prompt": "a cat"})}])

    async def ask(crash: bool):
        client = LLMClient(llm, folder=folder, purpose="polish")
        if crash:
            _crash_on(client.usage, "record", 1, after=False)
        async with client:
            return await client.call(request, validate=lambda text: text), client

    with pytest.raises(Crash):
        asyncio.run(ask(crash=True))
    commits, ok, _, _ = _answers_and_usage(folder)
    assert sum(commits.values()) == 1 and not ok  # the answer is kept, its usage was lost with the process
    sent = len(server.requests())
    result, client = asyncio.run(ask(crash=False))
    assert result.ok and len(server.requests()) == sent  # served from the cache
    commits, ok, cache_usd, usage_usd = _answers_and_usage(folder)
    assert ok == commits and cache_usd > 0 and usage_usd == pytest.approx(cache_usd)
    rec = next(r for r in read_jsonl(folder / "usage-rank0.jsonl") if r["outcome"] == "ok")
    assert rec["recovered"] is True and rec["purpose"] == "polish"
    assert client.spent == pytest.approx(cache_usd)  # the budget counts the recovered dollars
    # A further client finds nothing to recover.
    asyncio.run(ask(crash=False))
    assert _answers_and_usage(folder)[1] == commits


# --------------------------------------------------------------------------------------------- status
def test_status_follows_the_batches_from_submission_to_collection(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(responder="judge", extra_args=["--batch-polls", "3"])
    batch = "    mode: batch\n    group_size: 1\n    batch: {poll_interval_s: 0.05, max_wait_s: 0.0, max_requests_per_file: 5}\n"
    cfg_path = _config(tmp_path, server.base_url, judge_extra=batch)
    build(load_config(cfg_path), progress=False)
    st = run_status(tmp_path / "run")
    ann = st["stages"]["annotate"]
    assert ann["state"] == "in batch" and ann["failures_by_kind"]["batch_pending"]["count"] == 12
    # The state file follows the server: polled once, each batch is in_progress now, not validating.
    assert ann["batches"]["in_flight_by_status"] == {"in_progress": 3}
    text = format_status(st)
    assert "3 batches in flight (in_progress 3; 12 requests)" in text and "polls them again" in text
    assert "not run" not in text.split("annotate", 1)[1].splitlines()[0]
    cfg_path.write_text(cfg_path.read_text().replace("max_wait_s: 0.0", "max_wait_s: 30"))
    build(load_config(cfg_path), progress=False)
    st = run_status(tmp_path / "run")
    assert st["stages"]["annotate"]["state"] == "done"
    text = format_status(st)
    assert "Batch API: 3 batches collected, none in flight" in text and "polls them again" not in text
    ResponseCache(tmp_path / "run" / "llm").close()


def test_the_scripted_server_bills_images_as_openai_publishes():
    """The stand-in's image billing against OpenAI's own worked examples (vision guide: 1024 x 1024 high
    detail = 765 tokens, 2048 x 4096 = 1105, any image at low detail = 85), not against our estimator:
    the budget test above would otherwise only compare the project with itself."""
    import base64
    import io

    from PIL import Image

    from visionprefer.testing.fake_openai import image_tokens_billed

    def url(w: int, h: int) -> str:
        buf = io.BytesIO()
        Image.new("RGB", (w, h)).save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    assert image_tokens_billed(url(1024, 1024), "high") == 765
    assert image_tokens_billed(url(2048, 4096), "high") == 1105
    assert image_tokens_billed(url(4096, 8192), "low") == 85
