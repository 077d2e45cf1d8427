"""The OpenAI Batch API path (visionprefer.llm.batch) against the scripted server's /v1/files and /v1/batches."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from visionprefer.config import BatchAPIConfig, LLMConfig
from visionprefer.llm.batch import BatchFailure, BatchLineTooLarge, BatchRunner, batch_client, split_batches
from visionprefer.llm.cache import ResponseCache, request_key
from visionprefer.llm.client import chat_request
from visionprefer.llm.usage import UsageLog, cost_usd, price_for
from visionprefer.testing.fake_openai import answer_polish

SECRET = "sk-batch-secret-key-0123456789"
MODEL = "gpt-4o-mini"


# --------------------------------------------------------------------------------------------- split
def test_split_at_the_default_request_limit():
    cfg = BatchAPIConfig()
    assert split_batches(
        [10] * 50_000, max_requests=cfg.max_requests_per_file, max_bytes=cfg.max_bytes_per_file
    ) == [range(0, 50_000)]
    groups = split_batches(
        [10] * 100_001, max_requests=cfg.max_requests_per_file, max_bytes=cfg.max_bytes_per_file
    )
    assert groups == [range(0, 50_000), range(50_000, 100_000), range(100_000, 100_001)]


def test_split_at_the_default_byte_limit():
    cfg = BatchAPIConfig()
    limits = {"max_requests": cfg.max_requests_per_file, "max_bytes": cfg.max_bytes_per_file}
    mb = 1_000_000
    assert split_batches([mb] * 200, **limits) == [range(0, 200)]  # exactly 200 MB fits
    assert split_batches([mb] * 201, **limits) == [range(0, 200), range(200, 201)]
    assert split_batches([199_999_999, 1], **limits) == [range(0, 2)]
    assert split_batches([199_999_999, 2, 5], **limits) == [range(0, 1), range(1, 3)]
    assert split_batches([cfg.max_bytes_per_file, 1], **limits) == [range(0, 1), range(1, 2)]
    assert split_batches([], **limits) == []
    # 50,000 lines of 4 kB are exactly at both limits at once
    sizes = [4_000] * 50_000 + [4_000]
    assert split_batches(sizes, **limits) == [range(0, 50_000), range(50_000, 50_001)]
    with pytest.raises(BatchLineTooLarge, match="line 2 is 200,000,001 bytes"):
        split_batches([1, 2, 200_000_001], **limits)


def test_split_groups_are_consecutive_and_within_limits():
    sizes = [(i * 7919) % 97 + 1 for i in range(1000)]
    groups = split_batches(sizes, max_requests=13, max_bytes=300)
    assert [i for g in groups for i in g] == list(range(1000))
    assert all(len(g) <= 13 and sum(sizes[i] for i in g) <= 300 for g in groups)
    # greedy: the next line would not have fit
    for g, nxt in zip(groups, groups[1:], strict=False):
        assert len(g) == 13 or sum(sizes[i] for i in g) + sizes[nxt.start] > 300


# --------------------------------------------------------------------------------------------- helpers
def _llm(base_url: str, **kw) -> LLMConfig:
    return LLMConfig(model=MODEL, base_url=base_url, timeout_s=5, max_attempts=3, **kw)


def _requests(llm: LLMConfig, n: int, tag: str = "") -> list[dict]:
    return [
        chat_request(llm, [{"role": "user", "content": json.dumps({"prompt": f"a  photo of {i} {tag}cats"})}])
        for i in range(n)
    ]


class Harness:
    """A runner over ``<tmp>/run`` with its own cache and usage objects (a fresh process, in effect)."""

    def __init__(self, tmp_path: Path, server, *, client=None, max_requests=3, max_bytes=200_000_000, **kw):
        llm_kw = {k: kw.pop(k) for k in list(kw) if k in ("max_cost_usd",)}
        self.llm = _llm(server.base_url, **llm_kw)
        self.run_dir = tmp_path / "run"
        self.folder = self.run_dir / "llm"
        self.state = self.run_dir / "annotate" / "batches-rank0.json"
        self.cache = ResponseCache(self.folder)
        self.usage = UsageLog(self.folder)
        cfg = BatchAPIConfig(
            max_requests_per_file=max_requests,
            max_bytes_per_file=max_bytes,
            poll_interval_s=kw.pop("poll_interval_s", 0.05),
            max_wait_s=kw.pop("max_wait_s", 20.0),
        )
        self.runner = BatchRunner(
            client,
            self.llm,
            cfg,
            state_path=self.state,
            cache=self.cache,
            usage=self.usage,
            purpose="judge",
            price=price_for(MODEL, {}),
        )

    def run(self, requests):
        return self.runner.run(requests)

    def close(self):
        self.runner.close()
        self.cache.close()
        self.usage.close()

    def state_json(self):
        return json.loads(self.state.read_text())


def _api(server, method: str, path: str) -> list[dict]:
    return [r for r in server.requests() if r.get("method") == method and r.get("path") == path]


def _lines(server) -> list[dict]:
    return [r for r in server.requests() if r["path"] == "batch:/v1/chat/completions"]


# --------------------------------------------------------------------------------------------- end to end
def test_end_to_end_several_batches_match_by_custom_id(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "2"])
    h = Harness(tmp_path, server, max_requests=4)
    requests = _requests(h.llm, 10)
    results = h.run(requests)
    keys = [request_key(r) for r in requests]
    assert results == dict.fromkeys(keys)
    assert h.runner.stats.batches_created == 3 and h.runner.stats.answered == 10
    assert len(_api(server, "POST", "/v1/files")) == 3
    creates = _api(server, "POST", "/v1/batches")
    assert len(creates) == 3
    assert all(
        r["auth"] == ("Bearer " + SECRET)[:12] for r in creates
    )  # the key from the environment was used

    # every answer belongs to its own request although the output files are shuffled
    for request, key in zip(requests, keys, strict=True):
        entry = h.cache.get(key)
        assert entry["text"] == answer_polish(request)
        assert entry["model"] == MODEL and entry["purpose"] == "judge" and entry["finish_reason"] == "stop"
        expected = cost_usd(price_for(MODEL, {}), entry["input_tokens"], entry["output_tokens"], batch=True)
        assert entry["usd"] == pytest.approx(expected) and entry["usd"] > 0
        assert set(entry) >= {"text", "refusal", "finish_reason", "input_tokens", "output_tokens", "time"}
    state = h.state_json()
    assert [e["requests"] for e in state["batches"]] == [4, 4, 2]
    assert all(
        e["collected"] and e["status"] == "completed" and e["custom_ids"] == [] for e in state["batches"]
    )
    assert {e["batch_id"] for e in state["batches"]} == {r["batch_id"] for r in creates}
    orders = []
    client = batch_client(h.llm)
    for i, e in enumerate(state["batches"]):
        out = [
            json.loads(x)["custom_id"] for x in client.files.content(e["output_file_id"]).text.splitlines()
        ]
        assert sorted(out) == sorted(keys[4 * i : 4 * i + 4])
        orders.append(out == keys[4 * i : 4 * i + len(out)])
    client.close()
    assert not all(orders), "the fake server should shuffle output lines"

    records = [r for r in h.usage.records() if r["purpose"] == "judge"]
    assert len(records) == 10 and all(
        r["outcome"] == "ok" and r["batch_id"] and r["attempt"] == 1 for r in records
    )
    assert sum(r["usd"] for r in records) == pytest.approx(sum(h.cache.get(k)["usd"] for k in keys))
    h.close()

    # the same requests again: all cached, nothing reaches the server; two new ones form one small batch
    before = len(server.requests())
    h2 = Harness(tmp_path, server, max_requests=4)
    assert h2.run(requests) == dict.fromkeys(keys)
    assert len(server.requests()) == before and h2.runner.stats.cached == 10
    more = _requests(h2.llm, 2, tag="new ")
    results = h2.run(requests + more)
    assert all(v is None for v in results.values()) and len(results) == 12
    assert h2.runner.stats.submitted == 2 and h2.runner.stats.cached == 10
    assert len(_api(server, "POST", "/v1/batches")) == 4
    assert Counter(r["custom_id"] for r in _lines(server)) == Counter(keys + [request_key(r) for r in more])
    h2.close()

    # the API key is nowhere under the run folder
    files = [p for p in h.run_dir.rglob("*") if p.is_file()]
    assert files and not any(SECRET.encode() in p.read_bytes() for p in files)
    assert not any(SECRET[:12].encode() in p.read_bytes() for p in files)


def test_restart_resumes_polling_the_same_batches(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "8"])
    h = Harness(tmp_path, server, max_requests=3, max_wait_s=0.12)
    requests = _requests(h.llm, 5)
    keys = [request_key(r) for r in requests]
    first = h.run(requests)
    assert set(first) == set(keys)
    assert all(isinstance(f, BatchFailure) and f.pending and f.kind == "transient" for f in first.values())
    assert all(f.error.startswith("pending: batch ") for f in first.values())
    assert h.runner.stats.pending == 5 and h.runner.stats.batches_created == 2
    state = h.state_json()
    assert [sorted(e["custom_ids"]) for e in state["batches"]] == [sorted(keys[:3]), sorted(keys[3:])]
    batch_ids = {e["batch_id"] for e in state["batches"]}
    assert all(e["input_file_id"] and not e["collected"] for e in state["batches"])
    assert len(h.cache) == 0 and not _lines(server)
    h.close()

    # a new process: same state file, new runner, cache and usage objects
    h2 = Harness(tmp_path, server, max_requests=3, max_wait_s=20)
    results = h2.run(requests)
    assert results == dict.fromkeys(keys)
    assert h2.runner.stats.resumed == 5 and h2.runner.stats.submitted == 0
    assert len(_api(server, "POST", "/v1/batches")) == 2  # no second create
    assert len(_api(server, "POST", "/v1/files")) == 2
    polled = {r["batch_id"] for r in server.requests() if r.get("method") == "GET" and "batch_id" in r}
    assert polled == batch_ids
    assert all(h2.cache.get(k)["text"] == answer_polish(r) for k, r in zip(keys, requests, strict=True))
    assert all(e["collected"] for e in h2.state_json()["batches"])
    h2.close()

    # a third run downloads nothing again
    before = len(server.requests())
    h3 = Harness(tmp_path, server)
    assert h3.run(requests) == dict.fromkeys(keys)
    assert len(server.requests()) == before
    h3.close()


def test_crash_between_batch_create_and_state_write_finds_the_batch(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "1"])
    client = batch_client(_llm(server.base_url))
    real_create = client.batches.create

    def create_then_die(**kwargs):
        real_create(**kwargs)
        raise KeyboardInterrupt  # killed after the server created the batch, before the state recorded it

    monkeypatch.setattr(client.batches, "create", create_then_die)
    h = Harness(tmp_path, server, client=client, max_requests=10)
    requests = _requests(h.llm, 4)
    with pytest.raises(KeyboardInterrupt):
        h.run(requests)
    h.close()
    client.close()
    (entry,) = h.state_json()["batches"]
    assert entry["batch_id"] is None and entry["input_file_id"]
    assert len(_api(server, "POST", "/v1/batches")) == 1

    h2 = Harness(tmp_path, server, max_requests=10)
    assert h2.run(requests) == dict.fromkeys(request_key(r) for r in requests)
    assert len(_api(server, "POST", "/v1/batches")) == 1  # found through the list, not created again
    assert _api(server, "GET", "/v1/batches")
    assert len(_api(server, "POST", "/v1/files")) == 1
    h2.close()


# --------------------------------------------------------------------------------------------- failures
def test_fault_lines_are_classified_and_recorded(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(
        faults="429:0.15,500:0.15,400:0.15,timeout:0.1,garbage:0.1,refusal:0.1",
        fault_seed="6",
        extra_args=["--batch-polls", "1"],
    )
    h = Harness(tmp_path, server, max_requests=8)
    requests = _requests(h.llm, 24)
    keys = [request_key(r) for r in requests]
    results = h.run(requests)
    fault = {r["custom_id"]: r["fault"] for r in _lines(server)}
    assert set(fault) == set(keys)
    seen = Counter(fault.values())
    assert all(seen[f] for f in ("429", "500", "400", "timeout", "garbage", "refusal", None)), seen
    expected_error = {"429": "HTTP 429: rate limited", "500": "HTTP 500: internal error", "400": "HTTP 400: "}
    for key in keys:
        f, r = fault[key], results[key]
        if f in ("429", "500", "timeout"):
            assert r is not None and r.kind == "transient" and not r.pending and r.batch_id
            assert r.error.startswith(expected_error.get(f, "request_timeout: "))
            assert key not in h.cache
        elif f == "400":
            assert r is not None and r.kind == "permanent" and r.error.startswith("HTTP 400: invalid request")
            assert key not in h.cache
        else:  # answered: content faults are the validator's business
            assert r is None
            entry = h.cache.get(key)
            if f == "refusal":
                assert entry["text"] is None and entry["refusal"]
            elif f == "garbage":
                assert entry["text"].startswith("Sure!")
            else:
                assert entry["text"] == answer_polish(requests[keys.index(key)])
    stats = h.runner.stats
    assert stats.transient == seen["429"] + seen["500"] + seen["timeout"] and stats.permanent == seen["400"]
    errors = {r["key"]: r for r in h.usage.records() if r["outcome"] == "error"}
    failed = {k for k in keys if results[k] is not None}
    assert set(errors) == failed
    assert all(errors[k]["error"] == results[k].error and errors[k]["usd"] == 0 for k in failed)
    totals = h.usage.totals()["judge"]
    assert totals["completions"] == len(keys) - len(failed) and totals["errors"] == len(failed)
    h.close()

    # the next run retries what it is given (the caller leaves out permanent failures): attempt 2
    retry = [
        r for r, k in zip(requests, keys, strict=True) if results[k] is not None and results[k].transient
    ]
    h2 = Harness(tmp_path, server, max_requests=8)
    again = h2.run(retry)
    assert h2.runner.stats.submitted == len(retry)
    attempts = {r["key"]: r["attempt"] for r in h2.usage.records() if r["key"] in again}
    assert set(attempts.values()) == {2}
    h2.close()


@pytest.mark.parametrize("final", ["expired", "failed"])
def test_expired_and_failed_batches(tmp_path, fake_llm, monkeypatch, final):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "1", "--batch-final", final])
    h = Harness(tmp_path, server, max_requests=10)
    requests = _requests(h.llm, 6)
    keys = [request_key(r) for r in requests]
    results = h.run(requests)
    (entry,) = h.state_json()["batches"]
    assert entry["collected"] and entry["status"] == final
    if final == "expired":  # the first half was answered, the rest expired: transient, retried next run
        answered = [k for k in keys if results[k] is None]
        assert len(answered) == 3 and all(k in h.cache for k in answered)
        expired = [results[k] for k in keys if results[k] is not None]
        assert len(expired) == 3 and all(
            f.kind == "transient" and f.error.startswith("batch_expired") for f in expired
        )
    else:  # a batch-level validation failure: no line processed
        assert all(
            f is not None and f.kind == "permanent" and "batch failed" in f.error for f in results.values()
        )
        assert len(h.cache) == 0
    assert len([r for r in h.usage.records() if r["outcome"] == "error"]) == sum(
        v is not None for v in results.values()
    )
    h.close()


def test_budget_and_oversized_requests_are_not_sent(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "1"])
    h = Harness(tmp_path, server, max_requests=10, max_bytes=400, max_cost_usd=1e-9)
    requests = _requests(h.llm, 2)
    results = h.run(requests)
    assert all(f.kind == "budget" for f in results.values()) and h.runner.budget_hit
    assert not server.requests()
    h.close()

    h = Harness(tmp_path, server, max_requests=10, max_bytes=400)
    big = chat_request(h.llm, [{"role": "user", "content": json.dumps({"prompt": "x" * 500})}])
    results = h.run([*requests, big])
    assert results[request_key(big)].kind == "permanent"
    assert "above the 400-byte limit" in results[request_key(big)].error
    assert all(results[request_key(r)] is None for r in requests)
    assert {r["custom_id"] for r in _lines(server)} == {request_key(r) for r in requests}
    h.close()


def test_unreachable_server_is_one_clear_error(tmp_path, monkeypatch):
    import socket

    import openai

    from visionprefer.llm.client import LLMUnreachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    server = type("S", (), {"base_url": base_url})()
    client = openai.OpenAI(api_key="x", base_url=base_url, max_retries=0)
    h = Harness(tmp_path, server, client=client)
    with pytest.raises(LLMUnreachable, match="cannot reach"):
        h.run(_requests(h.llm, 2))
    assert not h.state.exists()  # nothing was uploaded, so nothing to resume
    h.close()
    client.close()


def test_ranks_share_the_budget(tmp_path, fake_llm, monkeypatch):
    """Under a launcher each of N ranks submits its share: it may commit 1/N of what the budget leaves."""
    from visionprefer.llm.client import estimate_tokens

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_llm(extra_args=["--batch-polls", "1"])
    probe = _llm(server.base_url)
    requests = _requests(probe, 2)
    est = max(
        cost_usd(price_for(MODEL, {}), estimate_tokens(r), probe.max_tokens, batch=True) for r in requests
    )
    for ranks, answered in (
        (2, 1),
        (1, 2),
    ):  # 2.5 requests' worth: half of it holds one request, all of it two
        h = Harness(tmp_path / f"ranks{ranks}", server, max_requests=10, max_cost_usd=2.5 * est)
        h.runner.ranks = ranks
        results = h.run(requests)
        assert sum(f is None for f in results.values()) == answered
        assert sum(f is not None and f.kind == "budget" for f in results.values()) == 2 - answered
        h.close()
