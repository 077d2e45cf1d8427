"""Metric feedback with its two LLM roles against the scripted server: questions written by an LLM and
answered by a VLM (AGFSync's recipe with API models), estimated before and counted after."""

from __future__ import annotations

import json

import pytest

from visionprefer.annotate.stage import load_feedback
from visionprefer.build import build, open_run
from visionprefer.estimate import estimate_build
from visionprefer.scorers import template_questions
from visionprefer.status import run_status

from .conftest import metrics_build

PROMPTS = ["two dogs playing in the snow", "a red apple on a wooden table"]


def _config(tmp_path, base_url: str):
    llm = f"{{model: gpt-4o-mini, base_url: '{base_url}', concurrency: 4, backoff_s: 0.01}}"
    return metrics_build(
        tmp_path,
        PROMPTS,
        f"""
        questions: llm
        question_llm: {llm}
        vqa_backend: vlm
        vqa_llm: {llm}
        weights: {{vqa: 1.0}}
        """,
    )


def test_llm_questions_and_vlm_answers_estimate_build_and_count(tmp_path, fake_llm):
    server = fake_llm(responder="metrics")
    cfg = _config(tmp_path, server.base_url)
    before = estimate_build(cfg)["llm"]
    assert before["questions"]["calls"] == len(PROMPTS) and before["questions"]["usd"] > 0
    assert before["vqa"]["calls"] == 4 * len(PROMPTS) * 8  # 4 images a prompt, 8 questions assumed

    build(cfg, progress=False)
    chats = [r for r in server.requests() if r["path"].endswith("/chat/completions")]
    questions = {p: template_questions(p) for p in PROMPTS}  # what the scripted LLM writes
    n_vqa = sum(4 * len(q) for q in questions.values())
    assert len(chats) == len(PROMPTS) + n_vqa  # one question call per prompt, one VQA call per question
    feedback = load_feedback(cfg, open_run(cfg))
    assert len(feedback) == 8
    prompt_of = {
        r["prompt_id"]: r["prompt"]
        for r in map(json.loads, (tmp_path / "run" / "prompts" / "prompts.jsonl").read_text().splitlines())
    }
    for row in feedback.values():
        qs = questions[prompt_of[row["prompt_id"]]]
        expected = sum("snow" not in q["question"].lower() for q in qs) / len(qs)  # the VLM says no to snow
        assert row["metrics"]["vqa"] == pytest.approx(expected)
        assert row["overall"] == pytest.approx(expected)
    llm = run_status(tmp_path / "run")["llm"]
    assert llm["questions"]["completions"] == len(PROMPTS) and llm["vqa"]["completions"] == n_vqa

    after = estimate_build(cfg)["llm"]  # everything paid for is cached or done
    assert after["questions"]["calls"] == 0 and after["questions"]["cached"] == len(PROMPTS)
    assert after["vqa"]["calls"] == 0
    n = len(server.requests())
    build(cfg, progress=False)
    assert len(server.requests()) == n  # a rerun asks nothing again


def test_retry_failed_asks_again_for_questions_that_failed_permanently(tmp_path, fake_llm):
    """Question writing that failed permanently (garbage answers, re-ask included) is replayed from the cache
    by a plain rerun, and asked again with --retry-failed."""
    from visionprefer.cli import main

    bad = fake_llm(responder="metrics", faults="garbage:1.0")
    cfg = _config(tmp_path, bad.base_url)
    build(cfg, progress=False)
    st = run_status(tmp_path / "run")["stages"]["annotate"]
    assert st["done"] == 0 and st["failed_permanent"] == 8
    good = fake_llm(responder="metrics")
    cfg = _config(tmp_path, good.base_url)  # same requests (the server is not in their keys)
    build(cfg, progress=False)
    assert not good.requests()  # permanent: nothing asked again
    assert main(["annotate", str(tmp_path / "config.yaml"), "--retry-failed", "-q"]) == 0
    asked = [r for r in good.requests() if r["path"].endswith("/chat/completions")]
    assert len(asked) > len(PROMPTS)  # the questions again, then their VQA answers
    assert run_status(tmp_path / "run")["stages"]["annotate"]["done"] == 8
