"""Requests-per-minute and tokens-per-minute limits as asyncio token buckets."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Refills at ``rate`` units per second up to ``capacity``; ``take(n)`` waits until n units are there."""

    def __init__(self, rate: float, capacity: float):
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, n: float = 1.0) -> None:
        n = min(n, self.capacity)  # a request larger than the bucket waits for a full bucket, not forever
        async with self._lock:  # first come, first served
            self._refill()
            while self.tokens < n:
                await asyncio.sleep((n - self.tokens) / self.rate)
                self._refill()
            self.tokens -= n

    def give_back(self, n: float) -> None:
        """Return units reserved by an estimate that turned out too high."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens + n)


class RateLimiter:
    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        # One second's worth of burst: smooth enough for the provider, no idle ramp-up at the start.
        self.requests = (
            TokenBucket(requests_per_minute / 60.0, requests_per_minute / 60.0)
            if requests_per_minute
            else None
        )
        self.tokens = (
            TokenBucket(tokens_per_minute / 60.0, tokens_per_minute / 60.0) if tokens_per_minute else None
        )

    async def acquire(self, estimated_tokens: int) -> None:
        if self.requests is not None:
            await self.requests.take(1)
        if self.tokens is not None:
            await self.tokens.take(estimated_tokens)

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        if self.tokens is not None and actual_tokens < estimated_tokens:
            self.tokens.give_back(estimated_tokens - actual_tokens)
