"""Tolerant parsing of model answers that should be JSON (for backends without structured output)."""

from __future__ import annotations

import json
import re
from typing import Any

from .client import InvalidAnswer

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: the whole text, a fenced ```json block, or the outermost {...} span."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise InvalidAnswer(f"not valid JSON: {' '.join(text.split())[:120]!r}", kind="invalid_json")
