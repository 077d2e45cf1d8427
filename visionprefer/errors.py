"""Exceptions raised by visionprefer.

Every error a user can fix derives from :class:`VisionPreferError`; the CLI prints its message on one
line and exits non-zero. Each subclass also inherits the matching built-in so that callers may catch
either::

    VisionPreferError
    ├── ConfigError(ValueError)          bad config file, key, type or value
    ├── SourceError(ValueError)          a prompt source that cannot be read
    ├── StageOrderError(RuntimeError)    a stage whose inputs are missing
    ├── RunDirError(RuntimeError)        a run directory that is missing or unusable
    ├── ModelLoadError(OSError)          a model that cannot be found or loaded
    ├── BudgetExceeded(RuntimeError)     a spending limit reached (the stage stops cleanly; exit code 3)
    ├── CalibrationFailed(RuntimeError)  a calibration gate is below min_accuracy (exit code 4)
    ├── RanksTimedOut(TimeoutError)      a rank waited for the others longer than the process group allows
    ├── LLMUnreachable(ConnectionError)  the LLM server cannot be reached at all
    ├── LLMAccessError(PermissionError)  the server refuses the credentials or does not serve the model
    ├── BatchLineTooLarge(ValueError)    one Batch API request is larger than a whole input file may be
    ├── VQAFailed(RuntimeError)          a VLM's VQA answer failed (a per-item failure of metric feedback)
    ├── SubmissionError(ValueError)      a leaderboard submission that is malformed (leaderboard.schema)
    └── InvalidAnswer                    a model's answer is not acceptable (raised by validators; recorded
                                         as a per-item failure of its ``kind``, never shown as an error)

Each is importable from here and from the module that raises it (``visionprefer.llm`` for the LLM ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class VisionPreferError(Exception):
    """Root of every error visionprefer raises on purpose."""

    exit_code = 2


class ConfigError(VisionPreferError, ValueError):
    """The configuration is missing, malformed, or names an unknown key, type or value."""


class SourceError(VisionPreferError, ValueError):
    """A prompt source cannot be read as a whole (a bad line is a per-item failure instead)."""


class StageOrderError(VisionPreferError, RuntimeError):
    """A stage was run before the stage that produces its inputs."""


class RunDirError(VisionPreferError, RuntimeError):
    """A run directory is missing, or is not a visionprefer run directory."""


class ModelLoadError(VisionPreferError, OSError):
    """A model id or path cannot be resolved or loaded."""


class BudgetExceeded(VisionPreferError, RuntimeError):
    """A configured spending limit would be exceeded; work done so far is kept."""

    exit_code = 3


class CalibrationFailed(VisionPreferError, RuntimeError):
    """The judge (or metric feedback's weighted total) agrees with people less often than
    ``annotate.judge.calibration.min_accuracy`` (``annotate.metrics.calibration.min_accuracy``): the build
    stopped before any main annotation was paid for."""

    exit_code = 4


class RanksTimedOut(VisionPreferError, TimeoutError):
    """Under a launcher, a rank waited at a barrier longer than the process group's timeout."""


class LLMUnreachable(VisionPreferError, ConnectionError):
    """The LLM server could not be reached at all."""


class LLMAccessError(VisionPreferError, PermissionError):
    """The server refused the credentials or does not serve the model."""


class BatchLineTooLarge(VisionPreferError, ValueError):
    """A single JSONL line is larger than a whole batch input file may be."""

    def __init__(self, index: int, size: int, max_bytes: int, name: str | None = None):
        self.index, self.size, self.max_bytes = index, size, max_bytes
        what = f"request {name}" if name else f"line {index}"
        super().__init__(
            f"Batch API: {what} is {size:,} bytes, above the {max_bytes:,}-byte limit of one input file "
            "(smaller images, or fewer per request)"
        )


class VQAFailed(VisionPreferError, RuntimeError):
    """A VLM's VQA answer failed (after the LLM layer's retries); ``failure_kind`` says why. Recorded as the
    image's per-item failure by metric feedback."""

    def __init__(self, message: str, failure_kind: str | None):
        super().__init__(message)
        self.failure_kind = failure_kind


class InvalidAnswer(VisionPreferError):
    """Raised by a validator: the answer came back but is not acceptable (the message says why).

    ``kind`` is the failure kind it is recorded under (:data:`FAILURE_KINDS`): ``schema`` unless the
    validator says otherwise (``invalid_json``, ``refusal``, ``empty``, ...)."""

    def __init__(self, message: str, kind: str = "schema"):
        super().__init__(message)
        self.kind = kind


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what one-line
    errors quote of a library's multi-line one."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --------------------------------------------------------------------------------------------- failure kinds
# Every recorded per-item failure (a prompt, an image, an annotation, a question set, a VQA answer) carries
# one of these in its ``failure_kind`` field, beside the free-text ``reason`` (the detail) and the retry
# class ``kind`` (``transient``: retried by the next run; ``permanent``: only with ``--retry-failed``).
# ``status`` counts failures per kind with one example each. The vocabulary is small and fixed on purpose:
# add a kind only for a cause a user would act on differently.
FAILURE_KINDS: dict[str, str] = {
    "invalid_json": "the answer is not JSON",
    "schema": "the answer is JSON but not in the requested format (missing fields, values outside the scale)",
    "refusal": "the model refused to answer",
    "empty": "the model returned an empty answer",
    "truncated": "the answer was cut off at max_tokens",
    "timeout": "the request timed out",
    "rate_limited": "the server answered 429 (rate or token limit)",
    "server_error": "the server answered 5xx",
    "connection": "the server could not be reached",
    "bad_request": "the server rejected the request (a 4xx other than 429)",
    "bad_response": "the server's response body could not be read",
    "budget": "max_cost_usd would be exceeded; nothing was sent",
    "batch_pending": "the Batch API has not answered yet",
    "batch_expired": "the Batch API batch expired, failed or was cancelled before answering",
    "batch_output": "a line of a Batch API output file could not be parsed",
    "image_unreadable": "an image file is missing or cannot be decoded",
    "model_error": "a local model raised an error (out of memory, a bad input shape, ...)",
    "invalid_input": "the item itself is invalid (an empty prompt, a bad setting for it)",
    "other": "anything else (the reason says what)",
}


def classify_failure(reason: str | None) -> str:
    """The failure kind of a free-text ``reason``, for records written before failures carried a
    ``failure_kind`` (and for errors whose kind the caller does not know)."""
    text = (reason or "").lower()
    rules = (
        ("budget", ("max_cost_usd", "budget:")),
        ("batch_pending", ("batch not collected", "not answered yet", "still pending", "batch pending")),
        ("batch_expired", ("expired", "cancelled", "batch failed")),
        ("refusal", ("refusal",)),
        ("empty", ("empty answer",)),
        ("invalid_json", ("not valid json", "invalid json")),
        ("rate_limited", ("http 429", "rate limit", "rate_limit")),
        ("server_error", ("http 5",)),
        ("timeout", ("timeout", "timed out")),
        ("connection", ("connection error", "cannot reach")),
        ("bad_request", ("http 4",)),
        ("bad_response", ("bad response",)),
        ("image_unreadable", ("cannot identify image", "image file", "unreadable")),
        ("schema", ("invalid answer", "expected", "outside", "missing", "must be", "not in")),
    )
    for kind, needles in rules:
        if any(n in text for n in needles):
            return kind
    return "other"


def failure_kind_of(record: dict) -> str:
    """A failure record's kind: its ``failure_kind`` field, else classified from its reason."""
    kind = record.get("failure_kind")
    return kind if kind in FAILURE_KINDS else classify_failure(record.get("reason"))


#: The retry classes of failure records that the next run retries (the others need ``--retry-failed``).
RETRIED = ("transient", "budget")


def top_reasons(reasons: Iterable[str], n: int = 5) -> dict[str, int]:
    """The ``n`` most frequent of ``reasons`` with their counts (what ``status`` lists per stage)."""
    from collections import Counter

    return dict(Counter(reasons).most_common(n))


def failures_by_kind(
    records: Iterable[dict[str, Any]], retry_field: str = "kind"
) -> dict[str, dict[str, Any]]:
    """Every failure kind among ``records`` (failure records of one stage): its count, how many of them
    the next run retries (``transient``) and how many only ``--retry-failed`` does (``permanent``), and
    one example (the first reason and raw answer seen), most frequent kind first."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        kind = failure_kind_of(rec)
        row = out.get(kind)
        if row is None:
            raw = rec.get("raw")
            row = out[kind] = {
                "count": 0,
                "transient": 0,
                "permanent": 0,
                "example": rec.get("reason"),
                "example_raw": raw[:300] if isinstance(raw, str) else None,
            }
        row["count"] += 1
        row["transient" if rec.get(retry_field) in RETRIED else "permanent"] += 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def progress_counts(
    planned: int, done: int, failed: dict[str, dict[str, Any]], short: bool = False
) -> dict[str, Any]:
    """A stage's ``status`` counts: ``planned`` items, ``done`` of them, ``failed`` (key -> failure record,
    in log order; ``kind`` transient or permanent) and what is left, with the top reasons (``short``: each
    reason up to its first " (") and the failures by kind."""
    permanent = sum(1 for v in failed.values() if v.get("kind") == "permanent")
    reasons = (v["reason"].split(" (")[0] if short else v["reason"] for v in failed.values())
    return {
        "planned": planned,
        "done": done,
        "pending": planned - done - len(failed),
        "failed": len(failed),
        "failed_transient": len(failed) - permanent,
        "failed_permanent": permanent,
        "reasons": top_reasons(reasons),
        "failures_by_kind": failures_by_kind(failed.values()),
    }
