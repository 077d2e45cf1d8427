"""The LLM layer: every paid call of visionprefer goes through :class:`LLMClient`.

It wraps the official ``openai`` async client (any ``base_url``: the OpenAI API, vLLM, Ollama, llama.cpp)
with its own retries switched off, so that this layer sees and counts every attempt:

* a concurrency limit and requests/tokens-per-minute buckets;
* retries of 408/409/429/5xx, timeouts and connection errors with exponential back-off, honouring
  ``retry-after-ms`` / ``Retry-After``;
* per-attempt accounting (tokens and dollars where a completion came back, the error where not);
* a persistent response cache keyed by the full request: a committed response is never requested again;
* validation of each answer, with a re-ask that quotes the validation error, then a recorded failure;
* a ``max_cost_usd`` budget that stops issuing requests before it would be exceeded.

Per-item outcomes are :class:`LLMResult` values, never exceptions; only conditions that doom the whole
stage raise (bad credentials, unknown model, an unreachable server).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..config import LLMConfig, PriceConfig
from ..errors import ConfigError, InvalidAnswer, LLMAccessError, LLMUnreachable
from .cache import ResponseCache, completion_entry, request_key
from .limits import RateLimiter
from .usage import UsageLog, commit_answer, cost_usd, price_for, recover_usage

T = TypeVar("T")


@dataclass
class LLMResult:
    ok: bool
    value: Any = None
    text: str | None = None  # the last raw answer (kept with a failure)
    error: str | None = None
    kind: str | None = None  # for failures: "transient", "permanent" or "budget" (whether it is retried)
    failure_kind: str | None = None  # for failures: the cause, from errors.FAILURE_KINDS
    cached: bool = False  # answered from the response cache (no request sent)
    # With ``send=False``: the request that must be answered (e.g. by the Batch API) before this item can
    # be settled — the first request, or the re-ask of an invalid answer.
    pending: dict[str, Any] | None = None


def estimate_tokens(request: dict[str, Any]) -> int:
    """Rough input-token count for limits and budgets: 4 characters a token, images by detail level."""
    if request.get("endpoint") == "moderations":
        return len(str(request.get("input", ""))) // 4 + 1
    chars, images = 0, 0
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                chars += len(part.get("text", ""))
            elif part.get("type") == "image_url":
                images += 85 if part["image_url"].get("detail") == "low" else 765
    return chars // 4 + images + 8 * len(request.get("messages", []))


def retry_after_seconds(headers: Any) -> float | None:
    """The server's requested delay: ``retry-after-ms`` (OpenAI), else ``Retry-After`` (seconds or date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit] + "…"


@functools.cache
def _ssl_context() -> Any:
    """One SSL context per process: loading the CA bundle costs tens of milliseconds per client."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def chat_request(
    config: LLMConfig,
    messages: list[dict[str, Any]],
    *,
    schema: dict[str, Any] | None = None,
    schema_name: str = "answer",
) -> dict[str, Any]:
    """The full chat-completions body for ``messages``: what is sent, and what the cache key digests."""
    request: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    if schema is not None and config.structured_output == "json_schema":
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
    elif schema is not None and config.structured_output == "json_object":
        request["response_format"] = {"type": "json_object"}
    return request


class LLMClient:
    """Use as ``async with LLMClient(...) as llm:``; one instance per stage and process."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        folder: Path,
        purpose: str,
        prices: dict[str, PriceConfig] | None = None,
        rank: int = 0,
        ranks: int = 1,
        batch_pricing: bool = False,
    ):
        """``ranks`` is the number of processes that split this stage's requests (each a rank of a launch):
        the configured limits are for the whole launch, so this process takes 1/``ranks`` of the
        concurrency (rounded up), of the requests and tokens per minute, and of what remains of
        ``max_cost_usd`` (so that together the ranks never exceed it)."""
        self.config = config
        self.purpose = purpose
        self.folder = folder
        self.rank = rank
        self.price = price_for(config.model, prices or {})
        self.batch_pricing = batch_pricing
        if config.max_cost_usd is not None and self.price is None:
            raise ConfigError(
                f"llm.max_cost_usd: no price known for model {config.model!r}; add it under `prices:` "
                "(input_per_mtok, output_per_mtok)"
            )
        self.cache = ResponseCache(folder, rank)
        self.usage = UsageLog(folder, rank)
        recover_usage(self.cache, self.usage)  # answers a crash left without their usage record
        self.spent = self.usage.totals().get(purpose, {}).get("usd", 0.0)
        # The dollars this process may reach: what is spent (by every rank so far) plus its share of the rest.
        self.budget = (
            None
            if config.max_cost_usd is None
            else self.spent + max(0.0, config.max_cost_usd - self.spent) / ranks
        )
        self.concurrency = max(1, -(-config.concurrency // ranks))
        self.budget_hit = False
        self.requests_sent = 0
        self._reserved = 0.0
        self._inflight: dict[str, asyncio.Future[Any]] = {}  # cache key -> the answer of a request on its way
        self._any_success = False
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter = RateLimiter(
            config.requests_per_minute / ranks if config.requests_per_minute else None,
            config.tokens_per_minute / ranks if config.tokens_per_minute else None,
        )

    # lifecycle -------------------------------------------------------------------------------------
    def _api_key(self) -> str:
        key = os.environ.get(self.config.api_key_env)
        if key:
            return key
        if self.config.base_url is None:
            raise ConfigError(
                f"llm: the OpenAI API needs a key in the environment variable {self.config.api_key_env}; "
                "set it, or point base_url at a local OpenAI-compatible server"
            )
        return "not-needed"  # local servers usually accept any key

    async def __aenter__(self) -> LLMClient:
        import openai
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(
            api_key=self._api_key(),
            base_url=self.config.base_url,
            max_retries=0,
            timeout=self.config.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context(), timeout=self.config.timeout_s),
        )
        self._sem = asyncio.Semaphore(self.concurrency)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()
        self.cache.close()
        self.usage.close()

    # requests --------------------------------------------------------------------------------------
    def chat_request(
        self,
        messages: list[dict[str, Any]],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "answer",
    ) -> dict[str, Any]:
        return chat_request(self.config, messages, schema=schema, schema_name=schema_name)

    async def call(
        self,
        request: dict[str, Any],
        *,
        validate: Callable[[str], Any],
        refresh: bool = False,
        send: bool = True,
    ) -> LLMResult:
        """Send (or replay from the cache) one request and validate its answer.

        A chat answer that fails validation is re-asked up to ``invalid_retries`` times with the error
        quoted; each re-ask is its own cached request. ``refresh`` ignores cached answers (for
        ``--retry-failed``) and caches the new ones.
        """
        rounds = 1 + (self.config.invalid_retries if "messages" in request else 0)
        last_error, last_text, all_cached, last_kind = "no answer", None, True, "schema"
        for _ in range(rounds):
            key = request_key(request)
            entry = None if refresh else self.cache.get(key)
            if entry is None and not send:
                if last_text is None and last_error == "no answer":
                    error = "no answer yet (batch not collected)"
                else:
                    error = f"re-ask not answered yet (after invalid answer: {last_error})"
                return LLMResult(
                    ok=False,
                    kind="transient",
                    error=error,
                    text=last_text,
                    pending=request,
                    failure_kind="batch_pending",
                )
            if entry is None:
                all_cached = False
                sent = await self._send(request, key)
                if isinstance(sent, LLMResult):
                    return sent
                entry = sent
            text = entry.get("text")
            try:
                if entry.get("refusal"):
                    raise InvalidAnswer(f"refusal: {_one_line(entry['refusal'])}", kind="refusal")
                if text is None or not str(text).strip():
                    raise InvalidAnswer("empty answer", kind="empty")
                return LLMResult(ok=True, value=validate(text), text=text, cached=all_cached)
            except InvalidAnswer as e:
                last_error, last_text = str(e), text
                last_kind = getattr(e, "kind", "schema")
                if entry.get("finish_reason") == "length" and last_kind in ("invalid_json", "schema"):
                    last_kind = "truncated"  # cut off at max_tokens: more tokens, not a re-ask, would help
                if "messages" in request:
                    request = {
                        **request,
                        "messages": [
                            *request["messages"],
                            {"role": "assistant", "content": text or ""},
                            {
                                "role": "user",
                                "content": f"That answer is invalid: {e}. Answer again, following "
                                "the output format exactly.",
                            },
                        ],
                    }
        return LLMResult(
            ok=False,
            error=f"invalid answer: {last_error}",
            text=last_text,
            kind="permanent",
            cached=all_cached,
            failure_kind=last_kind,
        )

    async def replay(self, request: dict[str, Any], *, validate: Callable[[str], Any]) -> LLMResult:
        """Validate an answer that is already in the cache (e.g. collected from the Batch API); never sends."""
        return await self.call(request, validate=validate, send=False)

    async def _send(self, request: dict[str, Any], key: str) -> dict[str, Any] | LLMResult:
        """Send ``request`` (its cache ``key``) unless the same request is already on its way from this
        client: then wait for that one's answer (two identical requests in flight are paid once, as a
        repeat after the answer is, through the cache)."""
        inflight = self._inflight
        pending = inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # an exception nobody waited for is still "retrieved": no warning at shutdown
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        inflight[key] = future
        try:
            result = await self._send_now(request, key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            raise
        finally:
            del inflight[key]
        future.set_result(result)
        return result

    async def _send_now(self, request: dict[str, Any], key: str) -> dict[str, Any] | LLMResult:
        import openai

        cfg = self.config
        est_in = estimate_tokens(request)
        est_out = cfg.max_tokens if "messages" in request else 0
        est_cost = cost_usd(self.price, est_in, est_out, batch=self.batch_pricing)
        last_error, last_kind = "no attempt", "other"
        only_connection_errors = True
        for attempt in range(1, cfg.max_attempts + 1):
            if self.budget is not None and self.spent + self._reserved + est_cost > self.budget:
                self.budget_hit = True
                return LLMResult(
                    ok=False,
                    kind="budget",
                    error=f"budget: max_cost_usd {cfg.max_cost_usd:g} would be exceeded "
                    f"(spent {self.spent:.4f})",
                    failure_kind="budget",
                )
            if self._sem is None:
                raise RuntimeError("LLMClient must be used as `async with LLMClient(...) as llm`")
            self._reserved += est_cost
            delay: float | None = None
            try:
                await self._limiter.acquire(est_in + est_out)
                async with self._sem:
                    self.requests_sent += 1
                    started = time.monotonic()
                    response = await self._dispatch(request)
            except openai.APIStatusError as e:
                status = e.status_code
                message = _one_line(getattr(e, "message", e))
                self._record_error(key, attempt, f"HTTP {status}: {message}")
                only_connection_errors = False
                if status in (401, 403):
                    raise LLMAccessError(
                        f"LLM server refused the credentials (HTTP {status}) for model "
                        f"{cfg.model!r}; check {cfg.api_key_env}"
                    ) from None
                if status == 404:
                    raise LLMAccessError(
                        f"LLM server at {cfg.base_url or 'api.openai.com'} does not serve "
                        f"model {cfg.model!r} (HTTP 404: {message})"
                    ) from None
                last_error = f"HTTP {status}: {message}"
                last_kind = (
                    "rate_limited"
                    if status == 429
                    else "timeout"
                    if status == 408
                    else "server_error"
                    if status >= 500 or status == 409
                    else "bad_request"
                )
                if status not in (408, 409, 429) and status < 500:
                    if "response_format" in request and any(
                        w in message.lower() for w in ("response_format", "json_schema", "schema")
                    ):
                        last_error += (
                            "; a server without JSON-schema output needs the llm's structured_output "
                            "set to json_object or none"
                        )
                    return LLMResult(ok=False, error=last_error, kind="permanent", failure_kind=last_kind)
                delay = retry_after_seconds(e.response.headers if e.response is not None else None)
                if delay is not None and delay > cfg.max_retry_after_s:
                    return LLMResult(
                        ok=False,
                        kind="transient",
                        error=f"{last_error} (server asked to wait {delay:.0f}s)",
                        failure_kind=last_kind,
                    )
            except openai.APITimeoutError:
                last_error, last_kind = f"timeout after {cfg.timeout_s:g}s", "timeout"
                self._record_error(key, attempt, last_error)
                only_connection_errors = False
            except openai.APIConnectionError as e:
                last_error = f"connection error: {_one_line(e.__cause__ or e)}"
                last_kind = "connection"
                self._record_error(key, attempt, last_error)
            except (openai.APIError, ValueError) as e:  # a malformed response body (JSON that does not parse)
                last_error, last_kind = f"bad response: {_one_line(e)}", "bad_response"
                self._record_error(key, attempt, last_error)
                only_connection_errors = False
            else:
                entry = self._commit(request, key, attempt, response, time.monotonic() - started)
                self._limiter.settle(est_in + est_out, entry["input_tokens"] + entry["output_tokens"])
                return entry
            finally:
                self._reserved -= est_cost
            if attempt < cfg.max_attempts:
                backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (attempt - 1)) * (
                    0.75 + 0.25 * random.random()
                )
                await asyncio.sleep(delay if delay is not None else backoff)
        if only_connection_errors and not self._any_success:
            raise LLMUnreachable(
                f"cannot reach the LLM server at {cfg.base_url or 'api.openai.com'}: {last_error}"
            )
        return LLMResult(
            ok=False,
            error=f"{last_error} (after {cfg.max_attempts} attempts)",
            kind="transient",
            failure_kind=last_kind,
        )

    async def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST the body as is and return the parsed JSON. The SDK's typed ``create`` methods re-validate
        every argument and build response models, which costs more CPU per call than everything else here;
        status errors still raise the SDK's ``APIStatusError`` types."""
        import httpx2

        if request.get("endpoint") == "moderations":
            path, body = "/moderations", {"model": request["model"], "input": request["input"]}
        else:
            path, body = "/chat/completions", request
        response = await self._client.post(path, body=body, cast_to=httpx2.Response)
        data = json.loads(response.content)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object from {path}, got {type(data).__name__}")
        return data

    def _record_error(self, key: str, attempt: int, error: str) -> None:
        self.usage.record(
            purpose=self.purpose,
            key=key,
            model=self.config.model,
            attempt=attempt,
            outcome="error",
            error=error,
            input_tokens=0,
            output_tokens=0,
            usd=0.0,
        )

    def _commit(
        self, request: dict[str, Any], key: str, attempt: int, response: dict[str, Any], latency: float
    ) -> dict:
        if request.get("endpoint") == "moderations":
            result = (response.get("results") or [{}])[0]
            flagged = sorted(name for name, hit in (result.get("categories") or {}).items() if hit)
            entry = {
                "text": json.dumps({"flagged": bool(result.get("flagged")), "categories": flagged}),
                "input_tokens": 0,
                "output_tokens": 0,
            }
        else:
            entry = completion_entry(response)
        usd = cost_usd(self.price, entry["input_tokens"], entry["output_tokens"], batch=self.batch_pricing)
        entry.update(model=self.config.model, purpose=self.purpose, usd=usd, time=time.time())
        commit_answer(self.cache, self.usage, key, entry, attempt=attempt, latency_s=round(latency, 4))
        self.spent += usd
        self._any_success = True
        return entry


async def run_bounded(
    items: Iterable[T],
    worker: Callable[[T], Awaitable[Any]],
    on_result: Callable[[T, Any], None],
    *,
    workers: int,
) -> None:
    """Run ``worker`` over ``items`` with at most ``workers`` in flight; ``on_result`` sees each outcome as it
    arrives. An exception from a worker cancels the rest and propagates."""
    iterator = iter(items)

    async def loop() -> None:
        for item in iterator:  # shared iterator: each item is taken by exactly one loop
            on_result(item, await worker(item))

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, workers)):
                tg.create_task(loop())
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None  # the caller sees the error itself (one line in the CLI), not a group
