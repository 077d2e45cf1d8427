"""The response cache: every paid answer, keyed by the full request, so it is never requested again.

Entries are JSON lines appended to ``<run>/llm/responses-rank<R>.jsonl`` (see
:class:`~visionprefer.rundir.AppendFile`): once ``put`` returns, the entry survives a ``kill -9``. Readers
take the union of every rank's file; a torn last line (from a crash mid-write) is skipped. The index keeps
only byte offsets in memory, so a large cache costs little RAM.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..rundir import AppendFile


def request_key(request: dict[str, Any]) -> str:
    """Digest of the full request body (model, messages, sampling and format parameters)."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def completion_entry(body: Any) -> dict[str, Any]:
    """What the cache keeps of a chat-completions response body: the first choice's text, refusal and
    finish reason, and the tokens billed (missing parts read as empty, so a malformed body still commits
    what was paid for and fails validation later)."""
    body = body if isinstance(body, dict) else {}
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return {
        "text": message.get("content"),
        "refusal": message.get("refusal"),
        "finish_reason": choice.get("finish_reason"),
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


class ResponseCache:
    def __init__(self, folder: Path, rank: int = 0):
        self.folder = folder
        self.path = folder / f"responses-rank{rank}.jsonl"
        self._index: dict[str, tuple[Path, int]] = {}
        self._repeats: Counter[str] = Counter()  # keys committed more than once to this rank's file (refresh)
        self._file = AppendFile(self.path)
        self._load()

    def _load(self) -> None:
        for path in sorted(self.folder.glob("responses-rank*.jsonl")):
            own = path == self.path
            with open(path, "rb") as f:
                offset = 0
                for line in f:
                    start, offset = offset, offset + len(line)
                    if not line.endswith(b"\n"):
                        break
                    try:
                        key = json.loads(line)["key"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    if own and self._index.get(key, (None,))[0] == path:
                        self._repeats[key] += 1
                    self._index[key] = (path, start)  # a later entry for the same key wins

    def own_commits(self) -> Counter[str]:
        """How many times each key was committed to this rank's file (what its usage log must hold as
        answered attempts)."""
        counts = Counter(key for key, (path, _) in self._index.items() if path == self.path)
        counts.update(self._repeats)
        return counts

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> dict[str, Any] | None:
        loc = self._index.get(key)
        if loc is None:
            return None
        path, offset = loc
        with open(path, "rb") as f:
            f.seek(offset)
            return json.loads(f.readline())

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Commit a response: once this returns, the request is never sent again for this run directory."""
        if self._index.get(key, (None,))[0] == self.path:
            self._repeats[key] += 1
        self._index[key] = (self.path, self._file.append({**entry, "key": key}))

    def close(self) -> None:
        self._file.close()
