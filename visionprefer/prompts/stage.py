"""The prompts stage: read sources, clean, deduplicate, sample, and write ``prompts/prompts.jsonl``.

Cleaning collapses whitespace runs to one space and normalises Unicode to NFC. A prompt is dropped, with the
reason recorded in ``prompts/rejected.jsonl``, when it is empty, shorter than ``min_chars``, longer than
``max_chars``, or an exact duplicate of an earlier one; it fails when it cannot be read or holds control
characters (NUL and friends). Sampling happens after cleaning, so ``sample: N`` gives N usable prompts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from ..config import BuildConfig
from ..errors import SourceError
from ..keys import clean_text, prompt_key
from ..rundir import RunDir, read_jsonl, write_jsonl
from .sources import RawFailure, read_source

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
EXCERPT = 200  # characters of a rejected prompt kept in the log


@dataclass
class PromptSet:
    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"kept": len(self.kept), "filtered": 0, "failed": 0}
        for r in self.rejected:
            out[r["kind"]] += 1
        return out


def _rejected(source: str, index: int, text: str | None, reason: str, kind: str) -> dict[str, Any]:
    excerpt = None if text is None else (text if len(text) <= EXCERPT else text[:EXCERPT] + "…")
    return {
        "source": source,
        "source_index": index,
        "original": excerpt,
        "length": None if text is None else len(text),
        "reason": reason,
        "kind": kind,
    }


def collect_prompts(config: BuildConfig) -> PromptSet:
    """Read and clean every source of ``config`` (no files written)."""
    pc = config.prompts
    out = PromptSet()
    seen: dict[str, str] = {}
    for src in pc.sources:
        if src.benchmark is not None and src.path is None:
            from .benchmarks import benchmark_file

            path = benchmark_file(src.benchmark)
        else:
            path = config.resolve_path(src.path if src.path is not None else str(src.hf_dataset))
        n_items = n_blank = 0
        for item in read_source(src, path):
            n_items += 1
            if isinstance(item, RawFailure):
                out.rejected.append(
                    _rejected(item.source, item.source_index, item.text, item.reason, "failed")
                )
                continue
            bad = _CONTROL.search(item.text)
            if bad:
                char = (
                    "a NUL byte" if bad.group() == "\x00" else f"control character U+{ord(bad.group()):04X}"
                )
                out.rejected.append(
                    _rejected(item.source, item.source_index, item.text, f"contains {char}", "failed")
                )
                continue
            text = clean_text(item.text)
            reason = None
            if not text:
                reason = "empty"
                n_blank += 1
            elif len(text) < pc.min_chars:
                reason = f"too short ({len(text)} chars < min_chars {pc.min_chars})"
            elif len(text) > pc.max_chars:
                reason = f"over-long ({len(text)} chars > max_chars {pc.max_chars})"
            elif pc.dedup and text in seen:
                reason = f"duplicate of {seen[text]}"
            if reason:
                out.rejected.append(_rejected(item.source, item.source_index, item.text, reason, "filtered"))
                continue
            pid = prompt_key(item.source, item.text)
            seen.setdefault(text, pid)
            out.kept.append(
                {
                    "prompt_id": pid,
                    "source": item.source,
                    "source_index": item.source_index,
                    "original": item.text,
                    "prompt": text,
                    "polish_model": None,
                    "safety": "ok",
                }
            )
        if n_items == 0:
            raise SourceError(f"{path}: no prompts in this source (the file is empty)")
        if n_blank == n_items:
            raise SourceError(f"{path}: no prompts in this source (only blank lines)")
    if not out.kept:
        reasons = sorted({r["reason"].split(" (")[0] for r in out.rejected})
        sources = ", ".join(s.source_name for s in pc.sources)
        raise SourceError(f"{sources}: every prompt was rejected ({'; '.join(reasons)})")
    # Same prompt id twice means the same text at two places of one source: keep the first.
    unique: dict[str, dict[str, Any]] = {}
    for rec in out.kept:
        unique.setdefault(rec["prompt_id"], rec)
    out.kept = list(unique.values())
    if pc.sample is not None and pc.sample < len(out.kept):
        chosen = sorted(random.Random(pc.sample_seed).sample(range(len(out.kept)), pc.sample))
        out.kept = [out.kept[i] for i in chosen]
    return out


def run_prompts_stage(
    config: BuildConfig, run: RunDir, *, retry_failed: bool = False, progress: bool = True
) -> PromptSet:
    """Clean, then (if configured) polish, safety-check and near-deduplicate the prompts, and write them into
    the run directory. A source error leaves earlier output untouched; paid answers are replayed from the
    response cache, so a rerun repeats no request that had come back."""
    from ..errors import BudgetExceeded

    pc = config.prompts
    result = collect_prompts(config)
    budget_error: BudgetExceeded | None = None
    if pc.polish.enabled or pc.safety.mode != "off":
        from .polish import polish_and_check

        try:
            kept, rejected = polish_and_check(
                result.kept, config, run.llm_dir, retry_failed=retry_failed, progress_enabled=progress
            )
        except BudgetExceeded as e:
            kept, rejected = e.partial  # type: ignore[attr-defined]
            budget_error = e
        result = PromptSet(kept=kept, rejected=result.rejected + rejected)
    if pc.near_dedup.enabled:
        from .near_dedup import drop_near_duplicates

        kept, dropped = drop_near_duplicates(result.kept, pc.near_dedup)
        result = PromptSet(kept=kept, rejected=result.rejected + dropped)
    write_jsonl(run.rejected_file, result.rejected)
    write_jsonl(run.prompts_file, result.kept)
    if budget_error is not None:
        raise budget_error
    return result


def load_prompts(run: RunDir) -> list[dict[str, Any]]:
    from ..errors import StageOrderError

    if not run.prompts_file.exists():
        raise StageOrderError(f"{run.root}: no prompts yet; run `visionprefer prompts CONFIG` first")
    return list(read_jsonl(run.prompts_file))


def load_rejected(run: RunDir) -> list[dict[str, Any]]:
    return list(read_jsonl(run.rejected_file))
