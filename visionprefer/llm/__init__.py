"""The LLM layer: one client for every paid call (prompt polishing, the judge, question generation)."""

from .client import (
    InvalidAnswer,
    LLMAccessError,
    LLMClient,
    LLMResult,
    LLMUnreachable,
    chat_request,
    estimate_tokens,
    run_bounded,
)
from .parse import extract_json

__all__ = [
    "InvalidAnswer",
    "LLMAccessError",
    "LLMClient",
    "LLMResult",
    "LLMUnreachable",
    "chat_request",
    "estimate_tokens",
    "extract_json",
    "run_bounded",
]
