"""The VLM judge: a prompt's images, shown together, scored on four aspects with explanations and ranked.

The system message is the annotation guide (``judge.md`` + the four aspect rubrics); its content hash is
the guide version stored with every annotation. The user message starts with a JSON header
``{"prompt", "num_images", "scale"}`` — the prompt travels only as quoted data — followed by the images as
base64 data URLs, labelled in the order shown. Answers are requested against a JSON schema and validated:
every image once, every aspect, every score inside the scale, an explanation for each, ranks 1..N.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path
from typing import Any

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


def judge_schema(n_images: int) -> dict[str, Any]:
    aspect = {
        "type": "object",
        "properties": {"score": {"type": "number"}, "explanation": {"type": "string"}},
        "required": ["score", "explanation"],
        "additionalProperties": False,
    }
    item = {
        "type": "object",
        "properties": {
            "image": {"type": "integer"},
            **dict.fromkeys(ASPECTS, aspect),
            "rank": {"type": "integer"},
        },
        "required": ["image", *ASPECTS, "rank"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "images": {"type": "array", "items": item, "minItems": n_images, "maxItems": n_images}
        },
        "required": ["images"],
        "additionalProperties": False,
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


def validate_judgement(text: str, n_images: int, lo: float, hi: float) -> list[dict[str, Any]]:
    """Per image shown (in order): ``{aspect: {score, explanation}, "rank": r}``; raises InvalidAnswer.

    Strict on content (every image once, every aspect, scores inside the scale, an explanation each,
    ranks 1..N), tolerant on form, as answers from servers without structured output come: JSON inside
    prose or a code fence, a bare list instead of ``{"images": [...]}``, aspect names spelled with spaces,
    hyphens or camel case, numbers as strings ("4", "4/5"), and entries without ``image`` numbers when
    none has one (then the list order is the order shown).
    """
    data = extract_json(text)
    if isinstance(data, dict):
        data = {_key(k): v for k, v in data.items()}
    rows = data if isinstance(data, list) else data.get("images") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise InvalidAnswer('expected a JSON object with an "images" list')
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


def rank_issues(results: list[dict[str, Any]], weights: dict[str, float]) -> list[str]:
    """Pairs whose stated ranks contradict their scores: one image at least as good on every aspect and
    better on one, yet ranked below; and pairs whose weighted overall differs but whose ranks are equal."""
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
            elif a["rank"] == b["rank"] and overall_score(a, weights) != overall_score(b, weights):
                issues.append(f"images {i + 1} and {j + 1}: equal rank {a['rank']} for different scores")
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


def estimate_judge(
    config,
    planned_per_prompt: dict[str, int],
    done_keys: Collection[str] | None = None,
    groups: list | None = None,
    observed: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Judge calls, tokens and dollars still to spend: for ``groups`` already formed (the prompts whose
    images are all made), those whose key is not in ``done_keys``; plus, for the prompts in
    ``planned_per_prompt`` (prompt id -> planned images; the others), the groups they will form.
    ``observed`` is ``(images judged, input tokens, output tokens)`` of this run so far: per image, those
    replace the heuristic (which knows neither the real image token counts nor the answer lengths)."""
    from ..llm.usage import cost_usd, price_for

    judge = config.annotate.judge
    guide, _ = load_guide(judge)
    price = price_for(judge.llm.model, config.prices)
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
    if observed is not None:
        images, seen_in, seen_out = observed
        tokens_in = round(sum(sizes) * seen_in / images)
        tokens_out = round(sum(sizes) * seen_out / images)
    else:
        tokens_in = sum(len(guide) // 4 + 40 + m * (image_tokens(judge) + 6) for m in sizes)
        tokens_out = sum(m * 160 for m in sizes)  # four scores, four short explanations and a rank per image
    return {
        "calls": len(sizes),
        "cached": cached,
        "images_per_call": max(sizes, default=0),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "usd": round(cost_usd(price, tokens_in, tokens_out, batch=judge.mode == "batch"), 4),
        "price_known": price is not None,
        "mode": judge.mode,
        "basis": "observed" if observed is not None else "heuristic",
    }
