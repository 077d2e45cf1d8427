"""Under a launcher, ranks that split a stage's requests split its limits: concurrency, requests and tokens
per minute, and what the budget leaves (so that together they never exceed it)."""

from __future__ import annotations

import asyncio
import json

import pytest

from visionprefer.config import LLMConfig
from visionprefer.llm import LLMClient, chat_request
from visionprefer.llm.usage import UsageLog


def _config(base_url: str, **kw) -> LLMConfig:
    return LLMConfig(model="gpt-4o-mini", base_url=base_url, backoff_s=0.01, **kw)


def test_limits_are_divided_among_ranks(tmp_path):
    cfg = _config("http://127.0.0.1:9/v1", concurrency=16, requests_per_minute=600, tokens_per_minute=60_000)
    one = LLMClient(cfg, folder=tmp_path / "a", purpose="judge")
    four = LLMClient(cfg, folder=tmp_path / "b", purpose="judge", ranks=4)
    assert (one.concurrency, four.concurrency) == (16, 4)
    assert four._limiter.requests.rate == pytest.approx(one._limiter.requests.rate / 4)
    assert four._limiter.tokens.rate == pytest.approx(one._limiter.tokens.rate / 4)
    assert (
        LLMClient(
            _config(cfg.base_url, concurrency=3), folder=tmp_path / "c", purpose="x", ranks=4
        ).concurrency
        == 1
    )


def test_each_rank_spends_at_most_its_share_of_the_budget(tmp_path, fake_llm):
    server = fake_llm()
    budget = 0.0003  # a few answers at gpt-4o-mini prices (each reserves its 64 output tokens first)
    cfg = _config(server.base_url, max_cost_usd=budget, concurrency=1, max_tokens=64)
    folder = tmp_path / "llm"

    async def rank(r: int) -> list:
        async with LLMClient(cfg, folder=folder, purpose="polish", rank=r, ranks=2) as llm:
            out = []
            for i in range(20):
                messages = [{"role": "user", "content": json.dumps({"prompt": f"a cat number {r}-{i}"})}]
                out.append(await llm.call(chat_request(cfg, messages), validate=str))
            return out

    first = asyncio.run(rank(0))  # rank 0 alone: half the budget
    spent0 = UsageLog(folder).totals()["polish"]["usd"]
    second = asyncio.run(rank(1))  # rank 1 after it: half of what rank 0 left
    spent1 = UsageLog(folder).totals()["polish"]["usd"] - spent0
    for results in (first, second):
        answered = sum(r.ok for r in results)
        assert 0 < answered < 20 and all(r.ok or r.kind == "budget" for r in results)
    assert 0 < spent0 <= budget / 2
    assert 0 < spent1 <= (budget - spent0) / 2
