"""The VLM judge: a prompt's images, shown together, scored on four aspects with explanations and ranked.

The system message is the annotation guide (``judge.md`` + the four aspect rubrics); its content hash is
the guide version stored with every annotation. The user message starts with a JSON header
``{"prompt", "num_images", "scale"}`` — the prompt travels only as quoted data — followed by the images as
base64 data URLs, labelled in the order shown. Answers are requested against a JSON schema built for the
request (:func:`judge_schema`) that is as tight as the validation: every instance of it is accepted, and
the ranks it cannot constrain are checked and repaired (:func:`settle_ranks`). Answers from servers
without structured output are validated strictly on content and tolerantly on form.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable, Collection
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ..config import ASPECTS, JudgeConfig
from ..errors import ConfigError
from ..llm import InvalidAnswer, extract_json
from ..resources import data_path

GUIDE_FILES = ("judge.md", "prompt_following.md", "fidelity.md", "aesthetic.md", "harmlessness.md")


def load_guide(judge: JudgeConfig) -> tuple[str, str]:
    """The judge's instruction text and its version (first 12 hex digits of its SHA-256)."""
    folder = Path(judge.guides) if judge.guides else data_path("annotation_guides")
    parts = []
    for name in GUIDE_FILES:
        path = folder / name
        try:
            parts.append(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"annotate.judge.guides: cannot read {path}: {e}") from None
    text = "\n\n".join(parts) + "\n"
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# Portable structured output. The schema is the strictest subset that OpenAI strict mode, vLLM (xgrammar,
# guidance, outlines), llama.cpp / Ollama, Anthropic and Gemini accept: every object lists all of its
# properties as required with ``additionalProperties: false``; no numeric ranges, string lengths or array
# bounds (Anthropic rejects them, Gemini ignores some); enums are lists of strings, because Gemini types
# ``enum`` as repeated string and refuses integer members. So a score is one of "1".."5" (the configured
# scale) and a rank one of "1".."N", and each image is its own required property ``image_1``..``image_N``
# (an array could not say "exactly N, each image once" portably). OpenAI caps a schema at 1,000 enum
# values in total (500 before 2025): above ``INLINE_ENUM_LIMIT`` the score and rank enums are each defined
# once under ``$defs`` and referenced (local ``$ref``s are resolved by OpenAI, Anthropic, vLLM and
# llama.cpp), so a group of N images costs (scale size + N) enum values, not N x (4 x scale size + N).
INLINE_ENUM_LIMIT = 500
SCHEMA_VERSION = 2  # enters the annotation key: a new answer format re-annotates


def image_field(i: int) -> str:
    """The answer's property for the ``i``-th image shown (1-based)."""
    return f"image_{i}"


def score_values(lo: int, hi: int) -> list[str]:
    return [str(v) for v in range(int(lo), int(hi) + 1)]


def judge_schema(n_images: int, lo: int = 1, hi: int = 5) -> dict[str, Any]:
    """The response schema of a judge request showing ``n_images`` images, scored on ``lo``..``hi``.

    Every instance of it is an acceptable answer (see :func:`validate_judgement`): one object per image,
    four aspects each with an explanation and a score from the scale, and a rank from 1..N. What no
    portable schema can say (ranks all different and agreeing with the scores) is checked after the fact
    and repaired (:func:`settle_ranks`), never a reason to discard the scores.
    """
    scores = score_values(lo, hi)
    ranks = [str(r) for r in range(1, n_images + 1)]
    inline = n_images * (len(ASPECTS) * len(scores) + len(ranks)) <= INLINE_ENUM_LIMIT
    score: dict[str, Any] = {"type": "string", "enum": scores} if inline else {"$ref": "#/$defs/score"}
    rank: dict[str, Any] = {"type": "string", "enum": ranks} if inline else {"$ref": "#/$defs/rank"}
    aspect = {
        "type": "object",
        "properties": {"explanation": {"type": "string"}, "score": score},
        "required": ["explanation", "score"],
        "additionalProperties": False,
    }
    image = {
        "type": "object",
        "properties": {**{a: aspect for a in ASPECTS}, "rank": rank},
        "required": [*ASPECTS, "rank"],
        "additionalProperties": False,
    }
    fields = [image_field(i) for i in range(1, n_images + 1)]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f: image for f in fields},
        "required": fields,
        "additionalProperties": False,
    }
    if not inline:
        schema["$defs"] = {
            "score": {"type": "string", "enum": scores},
            "rank": {"type": "string", "enum": ranks},
        }
    return schema


def judge_name(judge: JudgeConfig) -> str:
    """The model that judges: stored in every annotation's ``judge`` field."""
    return judge.local.model if judge.backend == "local" else judge.llm.model


def judge_identity(judge: JudgeConfig) -> Any:
    """What of the judge's settings enters the annotation key: everything that changes what the judge
    answers. For the API: the model, its temperature, the structured-output mode and how the images are
    shown (``image_max_side``, ``detail``); not ``max_tokens`` (it only decides whether an answer is cut
    off, and a cut-off answer is a failure, not a label). For the local model: the model with everything
    that decides its output (revision, dtype, the decoding limits; decoding is always greedy)."""
    if judge.backend != "local":
        llm = judge.llm
        return [llm.model, llm.temperature, llm.structured_output, judge.image_max_side, judge.detail]
    lc = judge.local
    return ["local", lc.model, lc.revision, lc.dtype, lc.max_new_tokens, lc.max_explanation_chars, "greedy"]


class JudgeClient(Protocol):
    """What the judge needs of the thing that answers its requests: the API client
    (:class:`~visionprefer.llm.LLMClient`, OpenAI or any OpenAI-compatible server) or an in-process
    model. ``call`` sends (or replays) one chat-completions request and returns an
    :class:`~visionprefer.llm.LLMResult` whose ``value`` is ``validate(answer text)``; per-item failures
    are results, never exceptions. Used as ``async with client:``."""

    concurrency: int
    spent: float

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...

    async def call(
        self, request: dict[str, Any], *, validate: Callable[[str], Any], refresh: bool = False
    ) -> Any: ...


class Judge:
    """The pointwise judge's side of the contract, whatever answers it: the request for a group of
    images (guide, quoted prompt, images, the per-request schema), the handling of an answer (validation,
    rank settling) and the done record. The stage owns the groups, the logs and the client."""

    def __init__(self, config: JudgeConfig, weights: dict[str, float]):
        self.config = config
        self.weights = weights
        self.guide, self.version = load_guide(config)
        self.lo, self.hi = config.score_min, config.score_max

    def request(self, prompt: str, files: list[str]) -> dict[str, Any]:
        """The chat-completions body that asks about ``files`` (in the order shown)."""
        from ..llm import chat_request

        return chat_request(
            self.config.llm,
            judge_messages(self.guide, prompt, files, self.config),
            schema=judge_schema(len(files), self.lo, self.hi),
            schema_name="judgement",
        )

    def validator(self, n_images: int) -> Callable[[str], list[dict[str, Any]]]:
        """The answer check for a request showing ``n_images`` images (raises InvalidAnswer)."""
        return lambda text: validate_judgement(text, n_images, self.lo, self.hi)

    def record(self, group: Any, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The done record of ``group`` (``annotate.stage.Group``) from its validated answer."""
        settled, issues = settle_ranks(results, self.weights)
        return {
            "annotation_id": group.annotation_id,
            "prompt_id": group.prompt_id,
            "image_ids": list(group.image_ids),
            "order": group.order,
            "judge": judge_name(self.config),
            "guide_version": self.version,
            "scale": [self.lo, self.hi],
            "results": dict(zip(group.image_ids, settled, strict=True)),
            "rank_consistent": not issues,
            "rank_issues": issues,
        }


@lru_cache(maxsize=256)  # a group and its reversed order reuse the same images
def image_data_url(path: str, max_side: int, fmt: str, quality: int) -> str:
    """The image at ``path`` as a data URL, downscaled so its longer side is at most ``max_side``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if fmt == "png":
            im.save(buf, format="PNG")
        else:
            im.save(buf, format="JPEG", quality=quality)
    mime = "image/png" if fmt == "png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def judge_messages(
    guide: str, prompt: str, image_paths: list[str], judge: JudgeConfig
) -> list[dict[str, Any]]:
    header = {"prompt": prompt, "num_images": len(image_paths), "scale": [judge.score_min, judge.score_max]}
    content: list[dict[str, Any]] = [{"type": "text", "text": json.dumps(header, ensure_ascii=False)}]
    for i, path in enumerate(image_paths, start=1):
        content.append({"type": "text", "text": f"Image {i}"})
        url = image_data_url(path, judge.image_max_side, judge.image_format, judge.image_quality)
        content.append({"type": "image_url", "image_url": {"url": url, "detail": judge.detail}})
    return [{"role": "system", "content": guide}, {"role": "user", "content": content}]


def _key(name: Any) -> str:
    """An aspect or field name as the schema spells it: "Prompt Following", "prompt-following" and
    "promptFollowing" all become "prompt_following"."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", str(name))
    return re.sub(r"[\s\-]+", "_", text.strip()).lower()


def _number(value: Any) -> float | None:
    """A score given as a number, or as a numeric string ("4", "4.5", "4/5" on its own scale)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?\s*", value)
        if m:
            return float(m.group(1))
    return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _schema_validator(n_images: int, lo: int, hi: int) -> Any:
    import jsonschema

    return _cached_validator(n_images, int(lo), int(hi), jsonschema.Draft202012Validator)


@lru_cache(maxsize=64)
def _cached_validator(n_images: int, lo: int, hi: int, cls: Any) -> Any:
    return cls(judge_schema(n_images, lo, hi))


def _from_schema_instance(data: dict[str, Any], n_images: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n_images + 1):
        row = data[image_field(i)]
        result: dict[str, Any] = {
            a: {"score": float(row[a]["score"]), "explanation": row[a]["explanation"].strip()}
            for a in ASPECTS
        }
        result["rank"] = int(row["rank"])
        out.append(result)
    return out


_IMAGE_FIELD = re.compile(r"image_?(\d+)")


def validate_judgement(text: str, n_images: int, lo: float, hi: float) -> list[dict[str, Any]]:
    """Per image shown (in order): ``{aspect: {score, explanation}, "rank": r}`` (``r`` as the model
    stated it; see :func:`settle_ranks`); raises InvalidAnswer.

    An answer that is an instance of :func:`judge_schema` (what a server with structured output returns)
    is always accepted, whatever its ranks and however short its explanations. Any other answer (servers
    without structured output) is validated strictly on content — every image once, every aspect, scores
    inside the scale, an explanation each, ranks 1..N — and tolerantly on form: JSON inside prose or a
    code fence, the older ``{"images": [...]}`` list (or a bare list), aspect names spelled with spaces,
    hyphens or camel case, numbers as strings ("4", "4/5"), and entries without ``image`` numbers when none
    has one (then the list order is the order shown).
    """
    data = extract_json(text)
    if isinstance(data, dict) and _schema_validator(n_images, lo, hi).is_valid(data):
        return _from_schema_instance(data, n_images)
    if isinstance(data, dict):
        data = {_key(k): v for k, v in data.items()}
    rows: Any = None
    if isinstance(data, dict) and "images" not in data:
        numbered = {m: v for k, v in data.items() if (m := _IMAGE_FIELD.fullmatch(k))}
        if numbered:  # the per-image properties of the schema, loosely spelled
            rows = [{**v, "image": m.group(1)} if isinstance(v, dict) else v for m, v in numbered.items()]
    if rows is None:
        rows = data if isinstance(data, list) else data.get("images") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise InvalidAnswer(f"expected a JSON object with the properties image_1..image_{n_images}")
    if len(rows) != n_images:
        raise InvalidAnswer(f"expected {n_images} image entries, got {len(rows)}")
    if not all(isinstance(row, dict) for row in rows):
        raise InvalidAnswer("every image entry must be an object")
    rows = [{_key(k): v for k, v in row.items()} for row in rows]
    if all("image" not in row for row in rows):
        rows = [{**row, "image": i} for i, row in enumerate(rows, start=1)]
    by_index: dict[int, dict[str, Any]] = {}
    for row in rows:
        idx = _integer(row.get("image"))
        if idx is None or not 1 <= idx <= n_images or idx in by_index:
            raise InvalidAnswer(f"image numbers must be 1..{n_images}, each once (got {row.get('image')!r})")
        by_index[idx] = row
    out = []
    for idx in range(1, n_images + 1):
        row = by_index[idx]
        result: dict[str, Any] = {}
        for aspect in ASPECTS:
            entry = row.get(aspect)
            if not isinstance(entry, dict):
                raise InvalidAnswer(f"image {idx}: aspect {aspect!r} is missing")
            entry = {_key(k): v for k, v in entry.items()}
            score = _number(entry.get("score"))
            if score is None or not lo <= score <= hi:
                raise InvalidAnswer(
                    f"image {idx}: {aspect} score {entry.get('score')!r} is outside {lo:g}..{hi:g}"
                )
            explanation = entry.get("explanation")
            if not isinstance(explanation, str) or not explanation.strip():
                raise InvalidAnswer(f"image {idx}: {aspect} has no explanation")
            result[aspect] = {"score": score, "explanation": explanation.strip()}
        rank = _integer(row.get("rank"))
        if rank is None or not 1 <= rank <= n_images:
            raise InvalidAnswer(f"image {idx}: rank {row.get('rank')!r} is not in 1..{n_images}")
        result["rank"] = rank
        out.append(result)
    return out


def settle_ranks(
    results: list[dict[str, Any]], weights: dict[str, float]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The judgement with ranks that are a permutation of 1..N agreeing with the scores, and the issues
    found in the ranks the model stated (empty when they were already such).

    Ranks are where a schema-valid answer can still be incoherent: two images ranked the same, or an
    image ranked below one it beats on every aspect. Such answers keep their scores and explanations (the
    product); their ranks are derived again, deterministically: by the weighted overall score, the
    model's own ranks breaking ties, then the order shown. Each image keeps ``stated_rank``.
    """
    issues = rank_issues(results, weights)
    stated = [r["rank"] for r in results]
    for rank in sorted(set(stated)):
        shown = [i + 1 for i, r in enumerate(stated) if r == rank]
        if len(shown) > 1:
            issues.append(f"rank {rank} given to images {', '.join(map(str, shown))}")
    if issues:
        order = sorted(range(len(results)), key=lambda i: (-overall_score(results[i], weights), stated[i], i))
        final = {i: r for r, i in enumerate(order, start=1)}
    else:
        final = dict(enumerate(stated))
    return [{**r, "rank": final[i], "stated_rank": stated[i]} for i, r in enumerate(results)], issues


def rank_issues(results: list[dict[str, Any]], weights: dict[str, float]) -> list[str]:
    """Pairs whose stated ranks contradict their scores: one image at least as good on every aspect and
    better on one, yet not ranked above the other. (Equal ranks are reported by :func:`settle_ranks`.)"""
    issues = []
    for i, a in enumerate(results):
        for j, b in enumerate(results):
            if i >= j:
                continue
            sa = [a[x]["score"] for x in ASPECTS]
            sb = [b[x]["score"] for x in ASPECTS]
            a_dominates = all(x >= y for x, y in zip(sa, sb, strict=True)) and sa != sb
            b_dominates = all(y >= x for x, y in zip(sa, sb, strict=True)) and sa != sb
            if (a_dominates and a["rank"] > b["rank"]) or (b_dominates and b["rank"] > a["rank"]):
                issues.append(
                    f"images {i + 1} and {j + 1}: ranks {a['rank']}/{b['rank']} contradict their scores"
                )
    return issues


def overall_score(result: dict[str, Any], weights: dict[str, float]) -> float:
    total = sum(weights.get(a, 0.0) for a in ASPECTS)
    if total <= 0:
        raise ConfigError("annotate.aspect_weights: weights must sum to a positive number")
    return sum(weights.get(a, 0.0) * result[a]["score"] for a in ASPECTS) / total


def image_tokens(judge: JudgeConfig) -> int:
    """Input tokens OpenAI bills for one image: 85 at low detail, else 85 + 170 per 512-px tile."""
    if judge.detail == "low":
        return 85
    side = judge.image_max_side
    # High detail scales the image to fit 2048 and its shorter side to 768, then counts 512-px tiles.
    side = min(side, 768)
    tiles = max(1, -(-side // 512)) ** 2
    return 85 + 170 * tiles


def call_tokens(
    judge: JudgeConfig, guide: str, images: int, observed: tuple[int, int, int] | None = None
) -> tuple[float, float]:
    """Input and output tokens predicted for one judge call on ``images`` images: per image as observed in
    this run (``(images judged, input tokens, output tokens)``) once there are some, else the heuristic
    (the guide at 4 characters a token, the billed image tokens, 160 answer tokens per image). What
    ``estimate`` sums and what the Batch API budget reserves (times its margin)."""
    if observed is not None:
        seen_images, seen_in, seen_out = observed
        return images * seen_in / seen_images, images * seen_out / seen_images
    # four scores, four short explanations and a rank per image
    return len(guide) // 4 + 40 + images * (image_tokens(judge) + 6), images * 160


def request_images(request: dict[str, Any]) -> int:
    """The number of images in a chat request."""
    return sum(
        1
        for message in request.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    )


def observed_judge(run: Any) -> tuple[int, int, int] | None:
    """``(images judged, input tokens, output tokens)`` of the judge so far in this run (every attempt's
    tokens, over the images of the finished annotations), or None before a few answers."""
    from ..llm.usage import MIN_OBSERVED_CALLS, usage_totals
    from ..rundir import read_jsonl

    if not run.llm_dir.exists():
        return None
    row = usage_totals(run.llm_dir).get("judge")
    if not row or row["completions"] < MIN_OBSERVED_CALLS:
        return None
    images = sum(
        len(rec.get("image_ids", ()))
        for path in run.stage_log("annotate", "annotation_id").done_paths()
        for rec in read_jsonl(path)
    )
    return (images, row["input_tokens"], row["output_tokens"]) if images else None


def estimate_judge(
    config,
    planned_per_prompt: dict[str, int],
    done_keys: Collection[str] | None = None,
    groups: list | None = None,
    observed: tuple[int, int, int] | None = None,
    observed_seconds: float | None = None,
) -> dict[str, Any]:
    """Judge calls, tokens and dollars still to spend: for ``groups`` already formed (the prompts whose
    images are all made), those whose key is not in ``done_keys``; plus, for the prompts in
    ``planned_per_prompt`` (prompt id -> planned images; the others), the groups they will form.
    ``observed`` is ``(images judged, input tokens, output tokens)`` of this run so far: per image, those
    replace the heuristic (which knows neither the real image token counts nor the answer lengths)."""
    from ..llm.usage import cost_usd, price_for, round_usd

    judge = config.annotate.judge
    guide, _ = load_guide(judge)
    price = price_for(judge.llm.model, config.prices) if judge.backend == "api" else None
    sizes: list[int] = []
    cached = 0
    if groups is not None:
        sizes = [len(g.image_ids) for g in groups if g.annotation_id not in (done_keys or ())]
        cached = len(groups) - len(sizes)
    for n in planned_per_prompt.values():
        size = judge.group_size or n
        for start in range(0, n, size):
            m = min(size, n - start)
            sizes += [m] * (2 if judge.both_orders and m > 1 else 1)
    per_call = [call_tokens(judge, guide, m, observed) for m in sizes]
    tokens_in = round(sum(t[0] for t in per_call))
    tokens_out = round(sum(t[1] for t in per_call))
    out = {
        "calls": len(sizes),
        "cached": cached,
        "images_per_call": max(sizes, default=0),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "usd": round_usd(cost_usd(price, tokens_in, tokens_out, batch=judge.mode == "batch")),
        "price_known": price is not None,
        "mode": judge.mode,
        "basis": "observed" if observed is not None else "heuristic",
    }
    if judge.backend == "local":
        # In-process: no dollars, GPU time. Seconds per group as observed in this run once a few groups are
        # judged (the usage log's latency: a batch's seconds shared by its groups), else the configured rate.
        rate = judge.local.groups_per_hour
        if observed_seconds is not None:
            rate = 3600.0 / max(observed_seconds, 1e-9)
        out.update(
            usd=0.0,
            price_known=True,
            mode="local",
            model=judge.local.model,
            groups_per_gpu_hour=round(rate, 1),
            gpu_hours=round(len(sizes) / rate, 3),
            gpu_basis="observed" if observed_seconds is not None else "configured",
        )
    return out
