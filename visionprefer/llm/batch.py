"""The OpenAI Batch API: submit chat requests as JSONL files, poll the batches, collect the answers.

About half the price of online requests, answered within the completion window. Resumable at every step:

* A request whose answer is already in the :class:`~visionprefer.llm.cache.ResponseCache` is never sent.
* The rest become JSONL lines ``{"custom_id": <request_key>, "method": "POST", "url": ..., "body": <request>}``,
  split by :func:`split_batches` into files of at most ``max_requests_per_file`` lines and
  ``max_bytes_per_file`` bytes; each file is uploaded (``purpose="batch"``) and a batch created on it.
* A state file (e.g. ``<run>/annotate/batches-rank<R>.json``) is rewritten atomically after every upload and
  every batch create. It holds the input file ids, batch ids and the ``custom_id`` of every line of every
  batch not yet collected, so a restarted process polls the same batches instead of resubmitting. (A crash
  between an upload and its batch create is repaired by finding the batch by its input file.)
* Batches are polled every ``poll_interval_s`` until final (``completed``, ``failed``, ``expired``,
  ``cancelled``) or until ``max_wait_s`` has passed: then the keys still waiting are reported as pending
  (transient) and the next :meth:`BatchRunner.run` with the same requests resumes polling.
* A final batch's output and error files are downloaded and matched line by line by ``custom_id`` (their
  order is not guaranteed). Every 200 answer is committed to the cache exactly as the online client commits
  one (same entry fields; dollars at the batch discount) and its usage recorded; every other line is
  recorded in the usage log with its error. Then the batch is marked collected (its ``custom_id`` list is
  dropped from the state) and is never downloaded again.

Failures are :class:`BatchFailure` values: ``transient`` (still pending, expired, cancelled, 408/409/429/5xx
lines, timeouts: retried by the next run) or ``permanent`` (other 4xx lines, invalid lines, a request larger
than a whole file may be) or ``budget`` (``max_cost_usd`` would be exceeded; nothing was sent).

The runner is synchronous and uses ``openai.OpenAI`` (see :func:`batch_client`: the key is read from the
environment variable named by ``LLMConfig.api_key_env`` and never written anywhere). One runner and one
state file per process (rank); the cache and usage log are the caller's (the runner does not close them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BatchAPIConfig, LLMConfig, PriceConfig
from ..errors import BatchLineTooLarge, ConfigError, RunDirError
from ..rundir import atomic_write_text
from .cache import ResponseCache, completion_entry, request_key
from .client import LLMAccessError, LLMUnreachable, _ssl_context, estimate_tokens
from .usage import UsageLog, commit_answer, cost_usd, observed_per_call, recover_usage

CHAT_ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Error codes of lines and batches (without an HTTP status, or batch-level) -> failure kind. These are the
# ones worth retrying in a later run; any other code is a permanent failure of kind bad_request.
_CODE_KINDS = {
    "batch_expired": "batch_expired",
    "batch_cancelled": "batch_expired",
    "rate_limit_exceeded": "rate_limited",
    "token_limit_exceeded": "rate_limited",
    "server_error": "server_error",
    "internal_error": "server_error",
    "service_unavailable": "server_error",
    "timeout": "timeout",
    "request_timeout": "timeout",
}
TRANSIENT_CODES = frozenset(_CODE_KINDS)
STATE_VERSION = 1
_UPLOAD_TIMEOUT_S = 600.0  # uploads and downloads of files up to 200 MB


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BatchFailure:
    """Why a request has no answer (yet). ``kind`` is the retry class (``transient``, ``permanent`` or
    ``budget``); ``failure_kind`` one of :data:`visionprefer.errors.FAILURE_KINDS`; ``raw`` the text the
    server sent where it was not usable (an output line that could not be parsed)."""

    kind: str
    error: str
    pending: bool = False  # its batch has not finished: the next run polls it again (kind is transient)
    batch_id: str | None = None
    failure_kind: str = "other"
    raw: str | None = None

    @property
    def transient(self) -> bool:
        return self.kind != "permanent"


@dataclass
class BatchStats:
    """Counts for the last :meth:`BatchRunner.run` (keys are request keys, counted once)."""

    requests: int = 0
    cached: int = 0  # already answered before this run: not sent
    resumed: int = 0  # in a batch submitted by an earlier run: polled, not resubmitted
    submitted: int = 0  # sent in a batch created by this run
    batches_created: int = 0
    batches_collected: int = 0
    answered: int = 0  # committed to the cache by this run
    transient: int = 0
    permanent: int = 0
    pending: int = 0
    budget: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # error (up to " (") -> count


# --------------------------------------------------------------------------------------------- split
def split_batches(sizes: Iterable[int], *, max_requests: int, max_bytes: int) -> list[range]:
    """Consecutive groups of JSONL lines (by index) with at most ``max_requests`` lines and ``max_bytes``
    bytes each (``sizes`` are the lines' byte lengths, newline included). Greedy, so the number of groups is
    minimal. A single line above ``max_bytes`` raises :class:`BatchLineTooLarge` naming its index."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("split_batches: max_requests and max_bytes must be positive")
    groups: list[range] = []
    start = count = total = 0
    index = -1
    for index, size in enumerate(sizes):
        if size > max_bytes:
            raise BatchLineTooLarge(index, size, max_bytes)
        if count and (count + 1 > max_requests or total + size > max_bytes):
            groups.append(range(start, index))
            start, count, total = index, 0, 0
        count += 1
        total += size
    if count:
        groups.append(range(start, index + 1))
    return groups


def batch_line(key: str, request: dict[str, Any], endpoint: str = CHAT_ENDPOINT) -> bytes:
    """One line of a Batch API input file (newline included)."""
    line = {"custom_id": key, "method": "POST", "url": endpoint, "body": request}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def batch_client(config: LLMConfig) -> Any:
    """A sync ``openai.OpenAI`` client for ``config``; the key comes from ``config.api_key_env``."""
    import openai

    key = os.environ.get(config.api_key_env)
    if not key:
        if config.base_url is None:
            raise ConfigError(
                f"llm: the OpenAI Batch API needs a key in the environment variable {config.api_key_env}"
            )
        key = "not-needed"
    return openai.OpenAI(
        api_key=key,
        base_url=config.base_url,
        timeout=config.timeout_s,
        http_client=openai.DefaultHttpxClient(verify=_ssl_context(), timeout=config.timeout_s),
    )


def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit] + "…"


def _status_kind(status: int) -> str:
    return "transient" if status in (408, 409, 429) or status >= 500 else "permanent"


def _http_failure_kind(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    return "server_error" if status >= 500 else "bad_request"


def _line_failure(record: dict[str, Any], batch_id: str) -> BatchFailure:
    """The failure of a non-200 line of an output or error file."""
    response = record.get("response")
    error = record.get("error")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        status = int(response["status_code"])
        body = response.get("body")
        message: Any = body
        if isinstance(body, dict):
            err = body.get("error")
            message = err.get("message", err) if isinstance(err, dict) else (err or body)
        return BatchFailure(
            _status_kind(status),
            f"HTTP {status}: {_one_line(message)}",
            batch_id=batch_id,
            failure_kind=_http_failure_kind(status),
        )
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        kind = "transient" if code in TRANSIENT_CODES else "permanent"
        return BatchFailure(
            kind,
            f"{code}: {_one_line(error.get('message', ''))}",
            batch_id=batch_id,
            failure_kind=_CODE_KINDS.get(code, "bad_request"),
        )
    return BatchFailure(
        "transient", "batch line without response or error", batch_id=batch_id, failure_kind="bad_response"
    )


_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([^"\\]{1,200})"')
_RAW_LIMIT = 20_000  # characters of an unparseable output line kept in the failure record


def _unparsed_failure(batch_id: str, text: str, *, named: bool, lines: int = 1) -> BatchFailure:
    """A request whose output line could not be parsed (``named``: the line still names it), or that has no
    readable line while ``lines`` lines of its batch's files could not be parsed. Permanent: the provider may
    have billed the answer, so it is sent again only with ``--retry-failed``."""
    if named:
        error = "batch output: the line answering this request is not valid JSON"
    else:
        error = (
            f"batch output: no readable line for this request; {lines} line(s) of the batch's files could "
            "not be parsed"
        )
    raw = text if len(text) <= _RAW_LIMIT else text[:_RAW_LIMIT] + "…"
    return BatchFailure("permanent", error, batch_id=batch_id, failure_kind="batch_output", raw=raw)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


# --------------------------------------------------------------------------------------------- runner
class _NotCollected(Exception):
    """A batch is final but its files could not be downloaded now (retried at the next poll or run)."""


class BatchRunner:
    """Submit, poll and collect chat requests through the OpenAI Batch API; see the module docstring.

    ``client`` is a sync ``openai.OpenAI`` (or compatible) client; ``None`` makes one with
    :func:`batch_client` (closed by :meth:`close`). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        client: Any,
        llm: LLMConfig,
        batch: BatchAPIConfig,
        *,
        state_path: Path,
        cache: ResponseCache,
        usage: UsageLog,
        purpose: str,
        price: PriceConfig | None,
        endpoint: str = CHAT_ENDPOINT,
        ranks: int = 1,
        predict: Callable[[dict[str, Any]], tuple[int, int]] | None = None,
    ):
        if llm.max_cost_usd is not None and price is None:
            raise ConfigError(
                f"llm.max_cost_usd: no price known for model {llm.model!r}; add it under `prices:` "
                "(input_per_mtok, output_per_mtok)"
            )
        self._owns_client = client is None
        self.client = batch_client(llm) if client is None else client
        self.llm = llm
        self.batch = batch
        self.state_path = Path(state_path)
        self.cache = cache
        self.usage = usage
        self.purpose = purpose
        self.price = price
        self.endpoint = endpoint
        self.ranks = (
            ranks  # processes submitting this stage's requests: each may commit 1/ranks of the budget
        )
        self.predict = predict  # request -> (input tokens, output tokens) expected; see reservation()
        self._observed: tuple[int, int] | None = None
        self.stats = BatchStats()
        self.budget_hit = False
        self._state: dict[str, Any] = {"version": STATE_VERSION, "batches": []}
        self._attempts: Counter[str] | None = None
        self._recorded: set[tuple[str, str]] = set()  # (request key, batch id) with a usage record
        self._reached = False  # some API call succeeded in this process

    # lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # state -----------------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"version": STATE_VERSION, "batches": []}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise RunDirError(f"Batch API state {self.state_path} is not valid JSON: {e}") from None
        version = state.get("version") if isinstance(state, dict) else None
        if version != STATE_VERSION or not isinstance(state.get("batches"), list):
            raise RunDirError(
                f"Batch API state {self.state_path}: unknown format (version {version}, expected {STATE_VERSION})"
            )
        return state

    def _save_state(self) -> None:
        entries = ",\n".join(
            json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in self._state["batches"]
        )
        text = f'{{"version": {STATE_VERSION}, "batches": [\n{entries}\n]}}\n'
        atomic_write_text(self.state_path, text)

    def pending_batches(self) -> list[dict[str, Any]]:
        """State entries of batches not yet collected (as stored; read-only view)."""
        return [dict(e) for e in self._load_state()["batches"] if not e.get("collected")]

    # run -------------------------------------------------------------------------------------------
    def run(self, requests: Iterable[dict[str, Any]]) -> dict[str, BatchFailure | None]:
        """Answer ``requests`` (chat-completions bodies) through the Batch API.

        Returns, for each request's :func:`~visionprefer.llm.cache.request_key`, ``None`` when its answer is in
        the cache (committed now or earlier) or a :class:`BatchFailure`. ``requests`` may be a generator: it
        is read once, and lines are spooled to a temporary file next to the state file, not kept in memory.
        """
        started = time.monotonic()
        deadline = None if self.batch.max_wait_s is None else started + self.batch.max_wait_s
        self.stats = BatchStats()
        self._state = self._load_state()
        self._attempts = None
        recover_usage(self.cache, self.usage)  # answers a crash left without their usage record
        results: dict[str, BatchFailure | None] = {}
        in_flight: dict[str, dict[str, Any]] = {}
        for entry in self._state["batches"]:
            if not entry.get("collected"):
                for key in entry["custom_ids"]:
                    in_flight[key] = entry

        relevant: dict[int, dict[str, Any]] = {}  # id(entry) -> entry with at least one requested key
        spool_fd, spool_name = tempfile.mkstemp(
            prefix=f".{self.state_path.name}.", suffix=".spool", dir=self._spool_dir()
        )
        try:
            with os.fdopen(spool_fd, "w+b") as spool:
                new_keys, sizes, estimates = self._read_requests(
                    requests, results, in_flight, relevant, spool
                )
                for entry in list(relevant.values()):
                    if entry.get("batch_id") is None:
                        self._recover(entry, results)
                self._submit(new_keys, sizes, estimates, spool, results, relevant)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool_name)

        waiting = [e for e in relevant.values() if e.get("batch_id") and not e.get("collected")]
        notes = self._poll(waiting, results, deadline)
        for entry in waiting:
            if entry.get("collected"):
                continue
            note = notes.get(entry["batch_id"])
            error = f"pending: batch {entry['batch_id']} is {entry.get('status') or 'submitted'}"
            if note:
                error += f" ({note})"
            for key in entry["custom_ids"]:
                current = results.get(key)
                if current is not None and current.pending:
                    results[key] = BatchFailure(
                        "transient",
                        error,
                        pending=True,
                        batch_id=entry["batch_id"],
                        failure_kind="batch_pending",
                    )
        self._count(results)
        return results

    def _spool_dir(self) -> Path:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        return self.state_path.parent

    def _read_requests(
        self,
        requests: Iterable[dict[str, Any]],
        results: dict[str, BatchFailure | None],
        in_flight: dict[str, dict[str, Any]],
        relevant: dict[int, dict[str, Any]],
        spool: Any,
    ) -> tuple[list[str], list[int], list[float]]:
        """Sort requests into cached, already in flight, and new (spooled as JSONL lines): the new keys, their
        line sizes and estimated dollars."""
        cfg = self.llm
        spent = reserved = 0.0
        allowance = None  # what this rank may have in flight: its share of what the budget leaves
        if cfg.max_cost_usd is not None:
            spent = self.usage.totals().get(self.purpose, {}).get("usd", 0.0)
            reserved = sum(e.get("est_usd", 0.0) for e in self._state["batches"] if not e.get("collected"))
            allowance = max(0.0, cfg.max_cost_usd - spent) / self.ranks
        new_keys: list[str] = []
        sizes: list[int] = []
        estimates: list[float] = []
        for request in requests:
            key = request_key(request)
            if key in results:
                continue
            self.stats.requests += 1
            if key in self.cache:
                results[key] = None
                self.stats.cached += 1
                continue
            entry = in_flight.get(key)
            if entry is not None:
                relevant[id(entry)] = entry
                results[key] = BatchFailure(
                    "transient",
                    "pending",
                    pending=True,
                    batch_id=entry.get("batch_id"),
                    failure_kind="batch_pending",
                )
                self.stats.resumed += 1
                continue
            est = self.reservation(request)
            if allowance is not None:
                if reserved + est > allowance:
                    self.budget_hit = True
                    results[key] = BatchFailure(
                        "budget",
                        f"budget: max_cost_usd {cfg.max_cost_usd:g} would be exceeded (spent {spent:.4f}, "
                        f"{reserved:.4f} reserved by batches in flight)",
                        failure_kind="budget",
                    )
                    continue
                reserved += est
            line = batch_line(key, request, self.endpoint)
            if len(line) > self.batch.max_bytes_per_file:
                results[key] = BatchFailure(
                    "permanent",
                    str(BatchLineTooLarge(len(sizes), len(line), self.batch.max_bytes_per_file, key)),
                )
                continue
            spool.write(line)
            new_keys.append(key)
            sizes.append(len(line))
            estimates.append(est)
            results[key] = BatchFailure("transient", "not submitted")  # replaced below
        return new_keys, sizes, estimates

    def reservation(self, request: dict[str, Any]) -> float:
        """Dollars the budget holds for ``request`` while its batch is in flight: the predicted cost times
        ``batch.budget_margin``, never more than the worst case (every allowed output token).

        The prediction is ``predict(request)`` when the caller gave one (the judge passes the per-call
        tokens that ``visionprefer estimate`` uses, observed ones once the run has some), else the request's
        input estimate and the mean output of this purpose's answers so far (the worst case before any)."""
        cfg = self.llm
        tokens_in = estimate_tokens(request)
        worst_out = int(request.get("max_tokens") or request.get("max_completion_tokens") or cfg.max_tokens)
        worst = cost_usd(self.price, tokens_in, worst_out, batch=True)
        if self.predict is not None:
            pred_in, pred_out = self.predict(request)
        else:
            if self._observed is None:
                self._observed = observed_per_call(self.usage.folder, self.purpose) or (0, worst_out)
            pred_in, pred_out = tokens_in, self._observed[1]
        predicted = cost_usd(self.price, pred_in, pred_out, batch=True) * self.batch.budget_margin
        return min(worst, predicted)

    # submission ------------------------------------------------------------------------------------
    def _submit(
        self,
        keys: list[str],
        sizes: list[int],
        estimates: list[float],
        spool: Any,
        results: dict[str, BatchFailure | None],
        relevant: dict[int, dict[str, Any]],
    ) -> None:
        if not keys:
            return
        groups = split_batches(
            sizes, max_requests=self.batch.max_requests_per_file, max_bytes=self.batch.max_bytes_per_file
        )
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        stop: BatchFailure | None = None  # set when the server says "not now": later groups wait for a rerun
        for group in groups:
            group_keys = keys[group.start : group.stop]
            if stop is not None:
                for key in group_keys:
                    results[key] = stop
                continue
            spool.seek(offsets[group.start])
            data = spool.read(offsets[group.stop] - offsets[group.start])
            n = len(self._state["batches"])
            try:
                uploaded = self.client.files.create(
                    file=(f"{self.state_path.stem}-{n:05d}.jsonl", data, "application/jsonl"),
                    purpose="batch",
                    timeout=max(self.llm.timeout_s, _UPLOAD_TIMEOUT_S),
                )
            except Exception as e:  # noqa: BLE001 - classified below
                failure = self._api_failure(e, "upload of a batch input file")
                for key in group_keys:
                    results[key] = failure
                if failure.kind == "transient":
                    stop = failure
                continue
            self._reached = True
            entry: dict[str, Any] = {
                "input_file_id": uploaded.id,
                "batch_id": None,
                "status": None,
                "purpose": self.purpose,
                "model": self.llm.model,
                "endpoint": self.endpoint,
                "requests": len(group_keys),
                "bytes": len(data),
                "est_usd": round(sum(estimates[group.start : group.stop]), 6),
                "uploaded_at": time.time(),
                "created_at": None,
                "collected": False,
                "custom_ids": group_keys,
            }
            self._state["batches"].append(entry)
            self._save_state()  # the file is known before its batch exists: a crash here is repairable
            relevant[id(entry)] = entry
            self.stats.submitted += len(group_keys)
            failure = self._create(entry)
            for key in group_keys:
                results[key] = failure or BatchFailure(
                    "transient",
                    "pending",
                    pending=True,
                    batch_id=entry["batch_id"],
                    failure_kind="batch_pending",
                )
            if failure is not None and failure.kind == "transient":
                stop = failure

    def _create(self, entry: dict[str, Any]) -> BatchFailure | None:
        """Create the batch of an uploaded input file; record it in the state at once."""
        try:
            created = self.client.batches.create(
                input_file_id=entry["input_file_id"],
                endpoint=self.endpoint,
                completion_window=self.batch.completion_window,
                metadata={"tool": "visionprefer", "purpose": self.purpose},
            )
        except Exception as e:  # noqa: BLE001 - classified below
            failure = self._api_failure(e, "batch create")
            if failure.kind == "permanent":  # the file is unusable: forget it, the keys may be resubmitted
                entry.update(collected=True, status="rejected", error=failure.error, custom_ids=[])
                self._save_state()
            return failure
        self._reached = True
        entry.update(batch_id=created.id, status=created.status, created_at=time.time())
        self._save_state()
        self.stats.batches_created += 1
        return None

    def _recover(self, entry: dict[str, Any], results: dict[str, BatchFailure | None]) -> None:
        """An input file uploaded by an earlier process whose batch create was not recorded: find the batch
        by its input file, or create it now."""
        found = self._find_batch(entry["input_file_id"], entry.get("uploaded_at") or 0.0)
        if isinstance(found, BatchFailure):  # cannot tell whether the batch exists: never risk a second one
            failure: BatchFailure | None = found
        elif found is not None:
            entry.update(batch_id=found.id, status=found.status, created_at=_get(found, "created_at"))
            self._save_state()
            return
        else:
            failure = self._create(entry)
        if failure is not None:
            for key in entry["custom_ids"] or []:
                if key in results:
                    results[key] = failure

    def _find_batch(self, input_file_id: str, uploaded_at: float) -> Any:
        """The batch created on ``input_file_id``, None when there is none, or a BatchFailure when the list
        cannot be read (a server without ``GET /batches`` counts as "none")."""
        try:
            for found in self.client.batches.list(limit=100):
                self._reached = True
                if found.input_file_id == input_file_id:
                    return found
                if found.created_at and found.created_at < uploaded_at - 3600:
                    return None  # listed newest first: older batches cannot be ours
        except Exception as e:  # noqa: BLE001 - classified by _api_failure
            failure = self._api_failure(e, "batch list")
            if failure.kind == "transient":
                return failure
        return None

    def _api_failure(self, e: Exception, what: str) -> BatchFailure:
        """Classify an exception of a management call; raises for conditions that doom the stage."""
        import openai

        where = self.llm.base_url or "api.openai.com"
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            message = _one_line(getattr(e, "message", e))
            if status in (401, 403):
                raise LLMAccessError(
                    f"Batch API refused the credentials (HTTP {status}) at {where}; check {self.llm.api_key_env}"
                ) from None
            if status in (404, 405) and "upload" in what:
                raise LLMAccessError(
                    f"the server at {where} does not offer the Batch API ({what}: HTTP {status}: {message}); "
                    "use the online mode"
                ) from None
            return BatchFailure(
                _status_kind(status),
                f"{what}: HTTP {status}: {message}",
                failure_kind=_http_failure_kind(status),
            )
        if isinstance(e, openai.APITimeoutError):
            return BatchFailure("transient", f"{what}: timeout", failure_kind="timeout")
        if isinstance(e, openai.APIConnectionError):
            if not self._reached:
                raise LLMUnreachable(
                    f"cannot reach the LLM server at {where}: {_one_line(e.__cause__ or e)}"
                ) from None
            return BatchFailure(
                "transient",
                f"{what}: connection error: {_one_line(e.__cause__ or e)}",
                failure_kind="connection",
            )
        if isinstance(e, (openai.APIError, ValueError)):
            return BatchFailure(
                "transient", f"{what}: bad response: {_one_line(e)}", failure_kind="bad_response"
            )
        raise e

    # polling and collection ------------------------------------------------------------------------
    def _poll(
        self, entries: list[dict[str, Any]], results: dict[str, BatchFailure | None], deadline: float | None
    ) -> dict[str, str]:
        """Poll until every entry is collected, ``max_wait_s`` passes, or the server keeps failing. Returns a
        note per batch id still waiting (its last error)."""
        waiting = list(entries)
        errors: Counter[str] = Counter()
        notes: dict[str, str] = {}
        while waiting:
            for entry in list(waiting):
                batch_id = entry["batch_id"]
                try:
                    batch = self.client.batches.retrieve(batch_id)
                    self._reached = True
                    if batch.status != entry.get("status"):  # kept in the state file: `status` shows it
                        entry["status"] = batch.status
                        if batch.status not in TERMINAL:
                            self._save_state()
                    if batch.status in TERMINAL:
                        self._collect(entry, batch, results)
                        waiting.remove(entry)
                    errors[batch_id] = 0
                    notes.pop(batch_id, None)
                except _NotCollected as e:
                    errors[batch_id] += 1
                    notes[batch_id] = str(e)
                except (LLMAccessError, LLMUnreachable):
                    raise
                except Exception as e:  # noqa: BLE001 - classified by _api_failure
                    import openai

                    if isinstance(
                        e, openai.NotFoundError
                    ):  # gone (another project or key): resubmit next run
                        self._forget(entry, results, f"batch {batch_id} not found on the server")
                        waiting.remove(entry)
                        continue
                    errors[batch_id] += 1
                    notes[batch_id] = self._api_failure(e, "batch retrieve").error
                if entry in waiting and errors[batch_id] >= self.llm.max_attempts:
                    waiting.remove(entry)  # the server keeps failing: leave it to the next run
            if not waiting:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            interval = self.batch.poll_interval_s
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - now)))
        return notes

    def _forget(self, entry: dict[str, Any], results: dict[str, BatchFailure | None], error: str) -> None:
        for key in entry["custom_ids"]:
            if key in results:
                results[key] = BatchFailure(
                    "transient", error, batch_id=entry["batch_id"], failure_kind="batch_expired"
                )
        entry.update(collected=True, status="missing", error=error, custom_ids=[])
        self._save_state()

    def _download(self, file_id: str, folder: Path) -> Path:
        """Stream a file to a temporary file (so a broken download commits nothing)."""
        fd, name = tempfile.mkstemp(prefix=f".{self.state_path.name}.", suffix=".download", dir=folder)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                self.client.files.with_streaming_response.content(
                    file_id, timeout=max(self.llm.timeout_s, _UPLOAD_TIMEOUT_S)
                ) as response,
            ):
                for chunk in response.iter_bytes():
                    out.write(chunk)
        except Exception as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise _NotCollected(self._api_failure(e, f"download of {file_id}").error) from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        return Path(name)

    def _collect(self, entry: dict[str, Any], batch: Any, results: dict[str, BatchFailure | None]) -> None:
        batch_id = entry["batch_id"]
        keys = set(entry["custom_ids"])
        outcome: dict[str, BatchFailure | None] = {}
        downloads: list[Path] = []
        try:
            for file_id in (_get(batch, "output_file_id"), _get(batch, "error_file_id")):
                if file_id:
                    downloads.append(self._download(file_id, self._spool_dir()))
            latency = None
            if _get(batch, "created_at"):
                end = _get(batch, "completed_at") or _get(batch, "expired_at") or _get(batch, "failed_at")
                end = end or _get(batch, "cancelled_at") or time.time()
                latency = round(float(end) - float(_get(batch, "created_at")), 3)
            unparsed: list[str] = []  # lines naming no request of this batch that can be read
            for path in downloads:
                with open(path, "rb") as f:
                    for raw in f:
                        if not raw.strip():
                            continue
                        try:
                            record = json.loads(raw)
                        except ValueError:
                            record = None
                        if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
                            # Not a line of the format: keep its text; the request it answers (when its id
                            # can still be read) is failed with it rather than silently sent (and paid) again.
                            text = raw.decode("utf-8", "replace").rstrip("\n")
                            found = _CUSTOM_ID.search(text)
                            key = found.group(1) if found else None
                            if key in keys and key not in outcome:
                                outcome[key] = _unparsed_failure(batch_id, text, named=True)
                            else:
                                unparsed.append(text)
                            continue
                        key = record["custom_id"]
                        if key not in keys or outcome.get(key, "unset") is None:
                            continue
                        response = record.get("response")
                        if isinstance(response, dict) and response.get("status_code") == 200:
                            outcome[key] = None
                            if key not in self.cache:  # already committed by an interrupted collection
                                self._commit(key, response.get("body") or {}, batch_id, latency)
                        else:
                            outcome[key] = _line_failure(record, batch_id)
        finally:
            for path in downloads:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        status = _get(batch, "status")
        batch_errors = _get(_get(batch, "errors"), "data") or []
        custom_ids = entry["custom_ids"]
        general: BatchFailure | None = None
        for err in batch_errors:
            code = str(_get(err, "code") or "error")
            failure = BatchFailure(
                "transient" if code in TRANSIENT_CODES else "permanent",
                f"batch {status}: {code}: {_one_line(_get(err, 'message') or '')}",
                batch_id=batch_id,
                failure_kind=_CODE_KINDS.get(
                    code, "batch_expired" if status in ("expired", "cancelled") else "bad_request"
                ),
            )
            line = _get(err, "line")
            if isinstance(line, int) and 1 <= line <= len(custom_ids):
                outcome.setdefault(custom_ids[line - 1], failure)
            elif general is None:
                general = failure
        if general is None and unparsed:
            general = _unparsed_failure(batch_id, "\n".join(unparsed), named=False, lines=len(unparsed))
        if general is None:
            reason = "not processed because of other lines" if batch_errors else "no result for this request"
            general = BatchFailure(
                "transient",
                f"batch {status}: {reason}",
                batch_id=batch_id,
                failure_kind="batch_expired" if status in ("expired", "cancelled", "failed") else "other",
            )
        for key in custom_ids:
            if key not in outcome:
                outcome[key] = general
        for key, failure in outcome.items():
            if failure is not None:
                self._record_error(key, failure, batch_id)
            if key in results:
                results[key] = failure
        entry.update(
            status=status,
            collected=True,
            collected_at=time.time(),
            output_file_id=_get(batch, "output_file_id"),
            error_file_id=_get(batch, "error_file_id"),
            counts={
                "ok": sum(1 for f in outcome.values() if f is None),
                "transient": sum(1 for f in outcome.values() if f is not None and f.kind == "transient"),
                "permanent": sum(1 for f in outcome.values() if f is not None and f.kind == "permanent"),
            },
            custom_ids=[],  # every key is now in the cache or in the usage log with its error
        )
        self._save_state()
        self.stats.batches_collected += 1

    def _load_attempts(self) -> Counter[str]:
        if self._attempts is None:
            self._attempts = Counter()
            self._recorded = set()
            for r in self.usage.records():
                if r.get("purpose") == self.purpose:
                    self._attempts[r.get("key")] += 1
                    if r.get("batch_id"):
                        self._recorded.add((r.get("key"), r["batch_id"]))
        return self._attempts

    def _attempt(self, key: str) -> int:
        attempts = self._load_attempts()
        attempts[key] += 1
        return attempts[key]

    def _commit(self, key: str, body: dict[str, Any], batch_id: str, latency: float | None) -> None:
        """Commit a 200 answer exactly as :meth:`LLMClient._commit` does (dollars at the batch price)."""
        entry = completion_entry(body)
        usd = cost_usd(self.price, entry["input_tokens"], entry["output_tokens"], batch=True)
        entry.update(model=self.llm.model, purpose=self.purpose, usd=usd, time=time.time(), batch_id=batch_id)
        attempt = self._attempt(key)
        commit_answer(
            self.cache, self.usage, key, entry, attempt=attempt, latency_s=latency, batch_id=batch_id
        )
        self.stats.answered += 1

    def _record_error(self, key: str, failure: BatchFailure, batch_id: str) -> None:
        """One error record per request and batch: a collection interrupted by a crash and repeated by the
        next run does not count its failures twice."""
        self._load_attempts()
        if (key, batch_id) in self._recorded:
            return
        self._recorded.add((key, batch_id))
        fields = {"raw": failure.raw} if failure.raw is not None else {}
        self.usage.record(
            purpose=self.purpose,
            key=key,
            model=self.llm.model,
            attempt=self._attempt(key),
            outcome="error",
            error=failure.error,
            failure_kind=failure.failure_kind,
            input_tokens=0,
            output_tokens=0,
            usd=0.0,
            batch_id=batch_id,
            **fields,
        )

    def _count(self, results: dict[str, BatchFailure | None]) -> None:
        for failure in results.values():
            if failure is None:
                continue
            if failure.pending:
                self.stats.pending += 1
            elif failure.kind == "budget":
                self.stats.budget += 1
            elif failure.kind == "transient":
                self.stats.transient += 1
            else:
                self.stats.permanent += 1
            reason = failure.error.split(" (")[0]
            self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
