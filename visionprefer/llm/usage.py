"""Token and dollar accounting: one record per attempt, in ``<run>/llm/usage-rank<R>.jsonl``.

An attempt that returned a completion records its input and output tokens and their price; one that did
not records the error. ``status`` and the budget read the sums.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import PriceConfig
from ..rundir import AppendFile, read_jsonl

if TYPE_CHECKING:
    from .cache import ResponseCache

# Held while an answer is committed to the cache and its usage recorded, and while usage is recovered, so
# that a recovery in one thread never sees the moment between the two writes of another.
COMMIT_LOCK = threading.Lock()

# US dollars per million tokens, standard (non-batch) tier, as published by OpenAI in 2025. A config's
# `prices:` section adds or overrides entries; a model matches its longest listed prefix.
DEFAULT_PRICES: dict[str, PriceConfig] = {
    "gpt-4o": PriceConfig(2.50, 10.00),
    "gpt-4o-mini": PriceConfig(0.15, 0.60),
    "gpt-4.1": PriceConfig(2.00, 8.00),
    "gpt-4.1-mini": PriceConfig(0.40, 1.60),
    "gpt-4.1-nano": PriceConfig(0.10, 0.40),
    "gpt-4-turbo": PriceConfig(10.00, 30.00),
    "gpt-4-vision-preview": PriceConfig(10.00, 30.00),
    "omni-moderation": PriceConfig(0.0, 0.0),
}


def price_for(model: str, table: dict[str, PriceConfig]) -> PriceConfig | None:
    merged = {**DEFAULT_PRICES, **table}
    if model in merged:
        return merged[model]
    matches = [name for name in merged if model.startswith(name)]
    return merged[max(matches, key=len)] if matches else None


def cost_usd(
    price: PriceConfig | None, input_tokens: int, output_tokens: int, *, batch: bool = False
) -> float:
    if price is None:
        return 0.0
    factor = price.batch_discount if batch else 1.0
    return factor * (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


def round_usd(usd: float) -> float:
    """Dollars for an estimate row: 4 decimals, but a non-zero cost below that keeps two significant digits
    (never rounded to 0, which would read as free)."""
    return round(usd, 4) if usd == 0 or abs(usd) >= 0.0001 else float(f"{usd:.2g}")


def format_usd(usd: float) -> str:
    """``$12.34``; a non-zero cost under a cent is ``<$0.01``, never ``$0.00``."""
    if 0 < usd < 0.005:
        return "<$0.01"
    return f"${usd:.2f}"


class UsageLog:
    def __init__(self, folder: Path, rank: int = 0):
        self.folder = folder
        self.path = folder / f"usage-rank{rank}.jsonl"
        self._file = AppendFile(self.path)
        self.recovered_for: object | None = None  # the cache recover_usage last matched this log against

    def record(self, **fields: Any) -> None:
        self._file.append({"time": time.time(), **fields})

    def close(self) -> None:
        self._file.close()

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in sorted(self.folder.glob("usage-rank*.jsonl")):
            out.extend(read_jsonl(path))
        return out

    def totals(self) -> dict[str, dict[str, Any]]:
        """Per purpose: attempts, completions, errors, tokens and dollars."""
        return usage_totals(self.folder)


def commit_answer(
    cache: ResponseCache, usage: UsageLog, key: str, entry: dict[str, Any], **record: Any
) -> None:
    """Commit a paid answer: the cache entry (``entry`` with its ``purpose``, ``model`` and ``usd``), then
    its ``ok`` usage record (``record`` adds attempt, latency, batch id). Under :data:`COMMIT_LOCK`; a crash
    between the two writes is repaired by :func:`recover_usage`."""
    with COMMIT_LOCK:
        cache.put(key, entry)  # committed: never requested again
        usage.record(
            purpose=entry["purpose"],
            key=key,
            model=entry["model"],
            outcome="ok",
            input_tokens=entry["input_tokens"],
            output_tokens=entry["output_tokens"],
            usd=entry["usd"],
            **record,
        )


def recover_usage(cache: ResponseCache, usage: UsageLog) -> int:
    """Record the usage of answers in this rank's cache that have no usage record: a crash between
    committing an answer and recording what it cost. The answer is never requested again, so without this
    its tokens and dollars would be missing from every total and budget for good. Each answered commit of a
    key in ``responses-rank<R>.jsonl`` is matched by one ``ok`` record in ``usage-rank<R>.jsonl``; a missing
    one is recorded from the cache entry (its tokens and dollars) with ``recovered: true``. Returns how many
    were recorded. Done once per cache and log in a process: while it lives, every commit writes both
    (:func:`commit_answer`), so there is nothing more to find (the Batch API runner of each re-ask round
    shares the stage client's cache and log)."""
    if usage.recovered_for is cache:
        return 0
    with COMMIT_LOCK:
        usage.recovered_for = cache
        commits = cache.own_commits()
        if not commits:
            return 0
        answered: Counter[str] = Counter()
        attempts: Counter[str] = Counter()
        for rec in read_jsonl(usage.path):
            key = rec.get("key")
            attempts[key] += 1
            answered[key] += rec.get("outcome") == "ok"
        recovered = 0
        for key, count in commits.items():
            missing = count - answered[key]
            if missing <= 0:
                continue
            entry = cache.get(key) or {}
            for _ in range(missing):
                attempts[key] += 1
                fields = {"batch_id": entry["batch_id"]} if entry.get("batch_id") else {}
                usage.record(
                    purpose=entry.get("purpose"),
                    key=key,
                    model=entry.get("model"),
                    attempt=attempts[key],
                    outcome="ok",
                    input_tokens=int(entry.get("input_tokens") or 0),
                    output_tokens=int(entry.get("output_tokens") or 0),
                    usd=float(entry.get("usd") or 0.0),
                    latency_s=None,
                    answered_at=entry.get("time"),
                    recovered=True,
                    **fields,
                )
                recovered += 1
        return recovered


def usage_totals(folder: Path) -> dict[str, dict[str, Any]]:
    """:meth:`UsageLog.totals` of the logs in ``folder``, read without opening a log for writing (so a
    reader such as ``estimate`` creates no file)."""
    sums: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "attempts": 0,
            "completions": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "usd": 0.0,
        }
    )
    for path in sorted(folder.glob("usage-rank*.jsonl")):
        for rec in read_jsonl(path):
            row = sums[rec.get("purpose", "?")]
            row["attempts"] += 1
            if rec.get("outcome") == "ok":
                row["completions"] += 1
            else:
                row["errors"] += 1
            row["input_tokens"] += rec.get("input_tokens") or 0
            row["output_tokens"] += rec.get("output_tokens") or 0
            row["usd"] += rec.get("usd") or 0.0
    return dict(sums)


MIN_OBSERVED_CALLS = 5  # answered calls before their mean replaces the heuristic in estimates


def observed_per_call(folder: Path, purpose: str) -> tuple[int, int] | None:
    """Mean input and output tokens per answered call of ``purpose`` in the usage logs in ``folder`` (every
    attempt's tokens over the answers: re-asks and retries count towards the cost of an answer), or None
    before ``MIN_OBSERVED_CALLS`` answers."""
    row = usage_totals(folder).get(purpose) if folder.exists() else None
    if not row or row["completions"] < MIN_OBSERVED_CALLS:
        return None
    n = row["completions"]
    return round(row["input_tokens"] / n), round(row["output_tokens"] / n)
