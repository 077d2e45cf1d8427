"""Stage 1: prompt sources, cleaning, deduplication and sampling."""

from .stage import PromptSet, clean_text, collect_prompts, load_prompts, run_prompts_stage

__all__ = ["PromptSet", "clean_text", "collect_prompts", "load_prompts", "run_prompts_stage"]
