"""Prompt polishing and safety through the LLM layer.

Each cleaned prompt is sent to the polishing model with the instruction file (``annotation_guides/
prompt_polishing.md`` by default, or ``prompts.polish.template``) as the system message and the prompt as a
JSON-quoted user message, so text inside a prompt cannot rewrite the instructions. The answer must be JSON
``{"prompt", "safe", "reason"}``; a polished prompt that is empty, far longer than the input, or reads like
chat rather than a prompt is invalid, re-asked once, then a recorded failure.

Safety comes from the same answer (``safety.mode: polish``) or from a moderation endpoint
(``safety.mode: moderation``); ``safety.action`` flags (kept, reason in ``safety``) or drops.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ..config import BuildConfig, LLMConfig
from ..errors import BudgetExceeded, ConfigError
from ..llm import InvalidAnswer, LLMClient, LLMResult, extract_json, run_bounded
from ..resources import data_path

POLISH_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "safe": {"type": "boolean"},
        "reason": {"type": ["string", "null"]},
    },
    "required": ["prompt", "safe", "reason"],
    "additionalProperties": False,
}
_CHATTY = re.compile(
    r"^(sure|certainly|of course|here is|here's|i'm sorry|i am sorry|i cannot|i can't|as an ai|polished prompt)\b",
    re.IGNORECASE,
)


def load_template(config: BuildConfig) -> tuple[str, str]:
    """The polishing instruction text and its version (content hash)."""
    template = config.prompts.polish.template
    path = config.resolve_path(template) if template else data_path("annotation_guides/prompt_polishing.md")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"prompts.polish.template: cannot read {path}: {e}") from None
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def polish_messages(instructions: str, prompt: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": json.dumps({"prompt": prompt}, ensure_ascii=False)},
    ]


def estimate_polish(records: list[dict[str, Any]], config: BuildConfig, folder: Path) -> dict[str, Any]:
    """Calls, tokens and dollars polishing ``records`` would still cost (answers in the cache are free)."""
    from ..llm import chat_request, estimate_tokens
    from ..llm.cache import ResponseCache, request_key
    from ..llm.usage import cost_usd, observed_per_call, price_for

    pc = config.prompts
    out = {"calls": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0, "moderation_calls": 0}
    if not pc.polish.enabled and pc.safety.mode != "moderation":
        return out
    cache = ResponseCache(folder) if folder.exists() else None
    instructions, _ = load_template(config) if pc.polish.enabled else ("", "")
    price = price_for(pc.polish.llm.model, config.prices)
    observed = observed_per_call(folder, "polish")
    for rec in records:
        if pc.safety.mode == "moderation":
            out["moderation_calls"] += 1
        if not pc.polish.enabled:
            continue
        request = chat_request(
            pc.polish.llm,
            polish_messages(instructions, rec["prompt"]),
            schema=POLISH_SCHEMA,
            schema_name="polished_prompt",
        )
        if cache is not None and request_key(request) in cache:
            out["cached"] += 1
            continue
        if observed is not None:  # what answered calls of this run actually cost, on average
            tokens_in, tokens_out = observed
        else:
            tokens_in = estimate_tokens(request)
            tokens_out = len(rec["prompt"]) // 3 + 20  # the polished prompt plus the JSON around it
        out["calls"] += 1
        out["input_tokens"] += tokens_in
        out["output_tokens"] += tokens_out
        out["usd"] += cost_usd(price, tokens_in, tokens_out)
    from ..llm.usage import round_usd

    out["usd"] = round_usd(out["usd"])
    out["price_known"] = price is not None
    out["basis"] = "observed" if observed is not None else "heuristic"
    return out


def validate_polish(text: str, original: str, max_ratio: float) -> dict[str, Any]:
    data = extract_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise InvalidAnswer('expected a JSON object with a string "prompt"')
    polished = " ".join(data["prompt"].split())
    if not polished:
        raise InvalidAnswer("the polished prompt is empty")
    if len(polished) > max_ratio * len(original) + 40:
        raise InvalidAnswer(
            f"the polished prompt is far longer than the input ({len(polished)} vs {len(original)} chars)"
        )
    if _CHATTY.match(polished) or "\n" in data["prompt"].strip():
        raise InvalidAnswer("the answer reads like a chat reply, not a single-line image prompt")
    safe = data.get("safe", True)
    if not isinstance(safe, bool):
        raise InvalidAnswer('"safe" must be true or false')
    reason = data.get("reason")
    return {"prompt": polished, "safe": safe, "reason": str(reason) if reason else None}


def validate_moderation(text: str) -> dict[str, Any]:
    data = json.loads(text)
    return {"safe": not data["flagged"], "reason": ", ".join(data["categories"]) or None}


async def _polish_all(
    records: list[dict[str, Any]], config: BuildConfig, folder: Path, *, retry_failed: bool, progress: Any
) -> dict[str, tuple[LLMResult, LLMResult | None]]:
    pc = config.prompts
    instructions, _ = load_template(config) if pc.polish.enabled else ("", "")
    safety_llm: LLMConfig | None = None
    if pc.safety.mode == "moderation":
        safety_llm = pc.safety.llm or pc.polish.llm
    results: dict[str, tuple[LLMResult, LLMResult | None]] = {}

    polisher = LLMClient(pc.polish.llm, folder=folder, purpose="polish", prices=config.prices)
    moderator = (
        LLMClient(safety_llm, folder=folder, purpose="moderation", prices=config.prices)
        if safety_llm is not None
        else None
    )

    async def one(rec: dict[str, Any]) -> tuple[LLMResult, LLMResult | None]:
        polished = LLMResult(
            ok=True, value={"prompt": rec["prompt"], "safe": True, "reason": None}, cached=True
        )
        if pc.polish.enabled:
            request = polisher.chat_request(
                polish_messages(instructions, rec["prompt"]),
                schema=POLISH_SCHEMA,
                schema_name="polished_prompt",
            )

            def check(text: str) -> dict[str, Any]:
                return validate_polish(text, rec["prompt"], pc.polish.max_length_ratio)

            polished = await polisher.call(request, validate=check)
            if not polished.ok and polished.kind == "permanent" and retry_failed:
                polished = await polisher.call(request, validate=check, refresh=True)
        moderated = None
        if moderator is not None and polished.ok:
            request = {
                "endpoint": "moderations",
                "model": pc.safety.moderation_model,
                "input": rec["original"],
            }
            moderated = await moderator.call(request, validate=validate_moderation)
        return polished, moderated

    def done(rec: dict[str, Any], outcome: tuple[LLMResult, LLMResult | None]) -> None:
        results[rec["prompt_id"]] = outcome
        progress.update(1)
        progress.set_postfix_str(f"${polisher.spent + (moderator.spent if moderator else 0.0):.4f}")

    async with polisher:
        if moderator is not None:
            async with moderator:
                await run_bounded(records, one, done, workers=2 * pc.polish.llm.concurrency)
        else:
            await run_bounded(records, one, done, workers=2 * pc.polish.llm.concurrency)
    return results


def polish_and_check(
    records: list[dict[str, Any]],
    config: BuildConfig,
    folder: Path,
    *,
    retry_failed: bool = False,
    progress_enabled: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Polish and safety-check ``records``; returns (kept, rejected). Raises BudgetExceeded after the
    answers that did come back are returned to the caller through ``exc.partial``."""
    from ..progress import progress_bar

    pc = config.prompts
    with progress_bar(total=len(records), desc="polish", unit="prompt", enabled=progress_enabled) as bar:
        results = asyncio.run(_polish_all(records, config, folder, retry_failed=retry_failed, progress=bar))
    kept, rejected = [], []
    budget_hit = False
    for rec in records:
        polished, moderated = results[rec["prompt_id"]]
        base = {
            "source": rec["source"],
            "source_index": rec["source_index"],
            "original": rec["original"],
            "length": len(rec["original"]),
            "prompt_id": rec["prompt_id"],
        }
        if not polished.ok:
            budget_hit |= polished.kind == "budget"
            rejected.append(
                {
                    **base,
                    "kind": "failed",
                    "stage": "polish",
                    "failure": polished.kind,
                    "failure_kind": polished.failure_kind,
                    "reason": f"polish: {polished.error}",
                    "raw": polished.text,
                }
            )
            continue
        if moderated is not None and not moderated.ok:
            budget_hit |= moderated.kind == "budget"
            rejected.append(
                {
                    **base,
                    "kind": "failed",
                    "stage": "moderation",
                    "failure": moderated.kind,
                    "failure_kind": moderated.failure_kind,
                    "reason": f"moderation: {moderated.error}",
                    "raw": moderated.text,
                }
            )
            continue
        verdict = moderated.value if moderated is not None else polished.value
        safety = "ok"
        if pc.safety.mode != "off" and not verdict["safe"]:
            safety = verdict["reason"] or "unsafe"
            if pc.safety.action == "drop":
                rejected.append(
                    {**base, "kind": "filtered", "stage": "safety", "reason": f"unsafe: {safety}"}
                )
                continue
        out = dict(rec)
        if pc.polish.enabled:
            out["prompt"] = polished.value["prompt"]
            out["polish_model"] = pc.polish.llm.model
        out["safety"] = safety
        kept.append(out)
    if budget_hit:
        err = BudgetExceeded(
            "prompts: max_cost_usd reached while polishing; finished prompts are kept, raise the budget and "
            "run the same command to continue"
        )
        err.partial = (kept, rejected)  # type: ignore[attr-defined]
        raise err
    return kept, rejected
