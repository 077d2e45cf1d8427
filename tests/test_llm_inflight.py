"""Identical requests in flight at once are sent once: the others wait for that answer (as a repeat after
it is answered from the cache), so they are paid once."""

from __future__ import annotations

import asyncio
import json

from visionprefer.config import LLMConfig
from visionprefer.llm import LLMClient, chat_request
from visionprefer.llm.usage import UsageLog


def test_identical_requests_in_flight_are_sent_once(tmp_path, fake_llm):
    server = fake_llm(latency=0.3)  # long enough for every call below to start before the first answer
    cfg = LLMConfig(model="gpt-4o-mini", base_url=server.base_url, backoff_s=0.01, concurrency=8)
    same = [{"role": "user", "content": json.dumps({"prompt": "a red cat"})}]
    other = [{"role": "user", "content": json.dumps({"prompt": "a blue dog"})}]

    async def main() -> list:
        async with LLMClient(cfg, folder=tmp_path / "llm", purpose="polish") as llm:
            calls = [llm.call(chat_request(cfg, m), validate=str) for m in (same, same, other, same)]
            return list(await asyncio.gather(*calls))

    results = asyncio.run(main())
    assert all(r.ok for r in results)
    assert results[0].text == results[1].text == results[3].text
    chats = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == 2  # "a red cat" once, "a blue dog" once
    assert UsageLog(tmp_path / "llm").totals()["polish"]["completions"] == 2
