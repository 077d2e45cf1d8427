"""Judge- and scorer-based win rates through the CLI, against a local OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from visionprefer.cli import main
from visionprefer.evaluate.images import generate_images


@pytest.fixture
def two_models(tmp_path):
    prompts = [f"a photo of object {i}" for i in range(12)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    items = [(f"{i:05d}.png", p) for i, p in enumerate(prompts)]
    generate_images("tiny-sd15", items, tmp_path / "a", progress=False)
    generate_images("tiny-sd21", items, tmp_path / "b", progress=False)
    return tmp_path


def _judge_winrate(folder, server, out):
    """``eval winrate`` of model A (folder/a) against B (folder/b) with the server's pairwise judge."""
    return main(
        [
            "eval",
            "winrate",
            "--prompts",
            str(folder / "p.txt"),
            "--a",
            str(folder / "a"),
            "--b",
            str(folder / "b"),
            "--judge-model",
            "gpt-4o",
            "--base-url",
            server.base_url,
            "--out",
            str(out),
            "-q",
        ]
    )


def _summary(path):
    return json.loads((path / "winrate_summary.json").read_text())


def test_fair_judge_both_orders_and_statistics(two_models, fake_llm):
    server = fake_llm(responder="pairwise")
    out = two_models / "fair"
    assert _judge_winrate(two_models, server, out) == 0
    assert len([r for r in server.requests() if r["path"] == "/v1/chat/completions"]) == 24  # both orders
    s = _summary(out)["pairs"]["A vs B"]
    items = [json.loads(line) for line in (out / "winrate_items.jsonl").read_text().splitlines()]
    w = sum(1 for i in items if i["outcome"] == 1)
    t = sum(1 for i in items if i["outcome"] == 0)
    l_ = sum(1 for i in items if i["outcome"] == -1)
    assert (s["wins"], s["ties"], s["losses"]) == (w, t, l_) and w + t + l_ == 12
    assert s["win_rate"] == pytest.approx((w + 0.5 * t) / 12)
    # The scripted judge is order-consistent, so every verdict agrees across orders: no forced ties.
    assert all((i["a_first"] == "A") == (i["b_first"] == "B") for i in items if i["a_first"] != "tie")
    assert (out / "winrate.png").exists() and "| A vs B |" in (out / "winrate.md").read_text()


def test_position_biased_judge_yields_ties_not_wins(two_models, fake_llm):
    server = fake_llm(responder="pairwise_biased")
    out = two_models / "biased"
    assert _judge_winrate(two_models, server, out) == 0
    s = _summary(out)["pairs"]["A vs B"]
    assert (s["wins"], s["ties"], s["losses"]) == (0, 12, 0)
    assert s["win_rate"] == 0.5 and s["decisive_win_rate"] is None


def test_scorer_win_rates_for_three_models_with_bradley_terry(two_models, capsys):
    items = [(f"{i:05d}.png", f"a photo of object {i}") for i in range(12)]
    generate_images("tiny-sdxl", items, two_models / "c", progress=False)
    out = two_models / "scored"
    assert (
        main(
            [
                "eval",
                "winrate",
                "--prompts",
                str(two_models / "p.txt"),
                "--model-dir",
                f"sd15={two_models / 'a'}",
                "--model-dir",
                f"sd21={two_models / 'b'}",
                "--model-dir",
                f"sdxl={two_models / 'c'}",
                "--scorer",
                "clip",
                "--scorer-model",
                "tiny-clip",
                "--bootstrap",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = _summary(out)
    assert set(summary["pairs"]) == {"sd15 vs sd21", "sd15 vs sdxl", "sd21 vs sdxl"}
    ratings = summary["bradley_terry"]
    assert set(ratings) == {"sd15", "sd21", "sdxl"}
    assert sum(r["rating"] for r in ratings.values()) / 3 == pytest.approx(1000, abs=1e-6)
    assert set(summary["elo"]) == {"sd15", "sd21", "sdxl"}
    # The ratings with their intervals, in winrate.md and on the console, as in the JSON.
    md, console = (out / "winrate.md").read_text(), capsys.readouterr().out
    for name, r in ratings.items():
        interval = f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        assert f"| {name} | {r['rating']:.1f} | {interval} | {r['n_battles']} |" in md
        assert f"Bradley–Terry {name}: {r['rating']:.1f} {interval}" in console
    for name, p in summary["pairs"].items():
        lo, hi = p["bootstrap_ci"]
        assert (
            f"{name}: W {p['wins']} / T {p['ties']} / L {p['losses']}, win rate {p['win_rate']:.3f} [{lo:.3f}, {hi:.3f}]"
            in console
        )


def test_winrate_submission_validates(two_models):
    info = two_models / "model.json"
    info.write_text(
        json.dumps(
            {
                "id": "tiny-sd15",
                "revision": None,
                "pipeline": "StableDiffusionPipeline",
                "scheduler": "DDIMScheduler",
                "steps": 2,
                "guidance_scale": 7.5,
                "height": 64,
                "width": 64,
                "seed_rule": "derive_seed(0, relative path, 0)",
                "dtype": "float32",
            }
        )
    )
    out = two_models / "sub"
    assert (
        main(
            [
                "eval",
                "winrate",
                "--prompts",
                str(two_models / "p.txt"),
                "--a",
                str(two_models / "a"),
                "--b",
                str(two_models / "b"),
                "--scorer",
                "clip",
                "--scorer-model",
                "tiny-clip",
                "--out",
                str(out),
                "--submission",
                str(out / "submission.json"),
                "--model-info",
                str(info),
                "-q",
            ]
        )
        == 0
    )
    sub = json.loads((out / "submission.json").read_text())
    (opp,) = sub["benchmarks"]["winrate"]["summary"]["opponents"]
    assert opp["opponent"] == "B" and opp["wins"] + opp["ties"] + opp["losses"] == 12
    assert main(["leaderboard", "validate", str(out / "submission.json")]) == 0


def test_pairwise_answers_tolerant_on_form_strict_on_content():
    from visionprefer.evaluate.winrate import validate_pairwise
    from visionprefer.llm import InvalidAnswer

    for text, winner in [
        ('{"winner": "A", "explanation": "sharper"}', "A"),
        ('Verdict:\n```json\n{"Winner": "Image B", "explanation": "follows the prompt"}\n```', "B"),
        ('{"winner": " Tie ", "explanation": "equally good"}', "tie"),
        ('{"winner": "b", "explanation": "x"}', "B"),
    ]:
        assert validate_pairwise(text) == winner
    for text in ('{"winner": "both", "explanation": "x"}', '{"explanation": "x"}', "I cannot decide."):
        with pytest.raises(InvalidAnswer):
            validate_pairwise(text)


def test_cq_scorer_nan_items_are_left_out_and_counted(tmp_path, capsys):
    """CQ is NaN for a prompt that names no detectable object: such prompts decide nothing, are counted per
    pair, and the run does not crash."""
    prompts = ["two dogs and a cat", "a beautiful sunset", "a red car", "a calm sea at dawn"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    items = [(f"{i:05d}.png", p) for i, p in enumerate(prompts)]
    generate_images("tiny-sd15", items, tmp_path / "a", progress=False)
    generate_images("tiny-sd21", items, tmp_path / "b", progress=False)
    out = tmp_path / "o"
    args = ["eval", "winrate", "--prompts", str(tmp_path / "p.txt"), "--a", str(tmp_path / "a")]
    args += ["--b", str(tmp_path / "b"), "--scorer", "cq", "--scorer-model", "tiny-yolos", "--out", str(out)]
    assert main(args) == 0
    summary = _summary(out)
    rows = [json.loads(line) for line in (out / "winrate_items.jsonl").read_text().splitlines()]
    nan = [r for r in rows if r["outcome"] is None]
    assert {r["prompt"] for r in nan} == {"a beautiful sunset", "a calm sea at dawn"}
    assert all(r["excluded"] == "score undefined (NaN)" and r["score_a"] is None for r in nan)
    assert summary["excluded_nan"] == {"A vs B": 2}
    s = summary["pairs"]["A vs B"]
    assert s["n"] == 2 and s["wins"] + s["ties"] + s["losses"] == 2
    assert "A vs B: 2 prompt(s) left out, a score is undefined (NaN)" in capsys.readouterr().out
    assert "2 prompt(s) left out" in (out / "winrate.md").read_text()


def test_judge_budget_limit_is_budget_exceeded_exit_3(two_models, fake_llm, capsys):
    from visionprefer.config import LLMConfig
    from visionprefer.errors import BudgetExceeded
    from visionprefer.evaluate.winrate import run_winrate

    server = fake_llm(responder="pairwise")
    judge = LLMConfig(model="gpt-4o", base_url=server.base_url, concurrency=1, max_cost_usd=1e-9)
    models = {"A": two_models / "a", "B": two_models / "b"}
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        run_winrate(two_models / "p.txt", models, two_models / "lib", judge=judge)
    args = ["eval", "winrate", "--prompts", str(two_models / "p.txt"), "--a", str(two_models / "a")]
    args += ["--b", str(two_models / "b"), "--judge-model", "gpt-4o", "--base-url", server.base_url]
    args += ["--max-cost-usd", "1e-9", "--out", str(two_models / "cli"), "-q"]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_cost_usd" in err[0]
