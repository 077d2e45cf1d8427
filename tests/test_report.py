"""The build report: an HTML page with PNG charts in ``<run>/report/`` that opens cleanly in Chromium."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from visionprefer.build import build, open_run
from visionprefer.config import load_config
from visionprefer.publish.report import write_report
from visionprefer.publish.stage import collect
from visionprefer.status import run_status

from .conftest import REPO, write_config

PROMPTS = [
    "a photo of a cat on a red sofa",
    "two dogs in the snow <script>alert('x')</script>",
    'a blue car by the sea & a "red" boat',
]
CHECK_SCRIPT = REPO / "scripts" / "check_report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def judged(tmp_path_factory, tiny_dir):
    """A judged build (2 tiny generators × 2 CFG scales × 3 prompts), made once for the module."""
    from visionprefer.testing import FakeOpenAIServer

    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(tmp / "hf-home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("VISIONPREFER_TINY_DIR", str(tiny_dir))
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("WORLD_SIZE", raising=False)
        server = FakeOpenAIServer(folder=tmp / "server", responder="judge", max_seconds=300).start()
        try:
            (tmp / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
            path = write_config(
                tmp,
                f"""\
                run_dir: {tmp / "run"}
                prompts: {{sources: [{{path: prompts.txt}}]}}
                generate:
                  generators: [{{preset: tiny-sd15}}, {{preset: tiny-sd21}}]
                  guidance_scales: [3.0, 7.5]
                annotate:
                  backend: judge
                  judge: {{image_max_side: 64, llm: {{base_url: "{server.base_url}", concurrency: 4}}}}
                """,
            )
            cfg = load_config(path)
            build(cfg, progress=False)
        finally:
            server.stop()
        yield cfg, open_run(cfg)


@pytest.fixture(scope="module")
def report(judged):
    """The judged run's report, written once for the tests that only read it."""
    cfg, run = judged
    index = write_report(cfg, run, status=run_status(run.root))
    return cfg, run, index, index.read_text(encoding="utf-8")


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """Body rows of the table with this id, as unescaped cell texts."""
    m = re.search(rf'<table id="{re.escape(table_id)}">(.*?)</table>', page, re.S)
    assert m, f"no table {table_id}"
    body = m.group(1).split("<tbody>", 1)[1]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def image_sources(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'<img [^>]*src="([^"]*)"', page)]


def test_page_charts_and_samples_exist_and_every_image_resolves(report):
    _, run, index, page = report
    assert index == run.root / "report" / "index.html"
    sources = image_sources(page)
    charts = {
        "scores_by_generator.png",
        "scores_by_cfg.png",
        "score_histogram.png",
        "winrate_by_generator.png",
        "winrate_by_cfg.png",
        "failures.png",
    }
    assert charts <= set(sources)
    samples = [s for s in sources if s.startswith("samples/")]
    assert len(samples) == 12  # 3 prompts × 2 generators × 2 scales
    for src in sources:
        path = (index.parent / src).resolve()
        assert path.is_relative_to(index.parent) and path.read_bytes().startswith(PNG_MAGIC), src
    # self-contained: nothing fetched from elsewhere, no scripts at all
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page.lower()
    assert "Content-Security-Policy" in page
    # the numbers the page states agree with the run
    status = run_status(run.root)
    counts = dict((r[0], r[1]) for r in table_rows(page, "counts"))
    assert counts["images"] == str(status["stages"]["generate"]["done"]) == "12"
    assert counts["pairs (all aspects)"] == str(status["stages"]["pairs"]["pairs"])
    spend = {r[0]: r for r in table_rows(page, "spend")}
    judge = status["llm"]["judge"]
    assert spend["judge"][1:6] == [
        str(judge[k]) for k in ("attempts", "completions", "errors", "input_tokens", "output_tokens")
    ]
    assert spend["judge"][6] == f"{judge['usd']:.4f}"
    stages = {r[0]: r for r in table_rows(page, "stages")}
    assert stages["generate"][2:4] == ["12", "0"]
    assert "random weights" in page


def _hand_win_rates(pairs, attr):
    points, n = Counter(), Counter()
    for p in pairs:
        if p["aspect"] != "overall" or p[f"{attr}_0"] == p[f"{attr}_1"]:
            continue
        a, b, label = p[f"{attr}_0"], p[f"{attr}_1"], p["label_0"]
        points[a] += label  # 1 win, 0.5 tie, 0 loss
        points[b] += 1 - label
        n[a] += 1
        n[b] += 1
    return {k: (points[k] / n[k], n[k]) for k in n}


def test_win_rates_shown_equal_a_hand_count_from_the_pairs(report):
    cfg, run, _, page = report
    pairs = collect(cfg, run)["pairs"]
    assert "win rate = (W + 0.5·T) / N" in page
    for attr, table_id, fmt in (
        ("generator", "winrate-generator", str),
        ("guidance_scale", "winrate-cfg", lambda g: f"{g:g}"),
    ):
        expected = _hand_win_rates(pairs, attr)
        shown = {r[0]: r for r in table_rows(page, table_id)}
        assert set(shown) == {fmt(k) for k in expected}
        for key, (rate, n) in expected.items():
            w, t, l_, n_shown, rate_shown = shown[fmt(key)][1:6]
            assert int(n_shown) == n == int(w) + int(t) + int(l_)
            assert rate_shown == f"{rate:.3f}"
            assert (int(w) + 0.5 * int(t)) / n == pytest.approx(rate)
    # each cross-generator pair counts once for each side: 3 prompts × (2 × 2) pairs
    assert int(table_rows(page, "winrate-generator")[0][4]) == 12


def test_untrusted_text_is_escaped(judged):
    cfg, run = judged
    status = run_status(run.root)
    status["stages"]["annotate"]["reasons"] = {'<img src=x onerror="alert(1)"> bad answer': 2}
    page = write_report(cfg, run, status=status).read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img src=x" not in page
    # the prompts are on the page as escaped text (markupsafe's escaping: jinja2's autoescape)
    from markupsafe import escape

    assert str(escape(PROMPTS[1])) in page and str(escape(PROMPTS[2])) in page
    assert html.unescape(str(escape(PROMPTS[1]))) == PROMPTS[1]
    assert ["annotate", "2", '<img src=x onerror="alert(1)"> bad answer'] in table_rows(page, "reasons")


def test_writing_twice_gives_identical_files_and_drops_stale_ones(judged):
    cfg, run = judged
    folder = write_report(cfg, run, status=run_status(run.root)).parent
    stale = folder / "samples" / "0000stale.png"
    stale.write_bytes(PNG_MAGIC)
    before = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p != stale}
    write_report(cfg, run, status=run_status(run.root))
    after = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    assert not stale.exists()
    assert list(after) == list(before)
    assert all(after[p] == data for p, data in before.items())


def test_metric_feedback_build(judged):
    """Aspects null, ``metrics`` present (AGFSync): panels per metric, no judge histogram."""
    from visionprefer.pairs.stage import derive_pairs

    cfg, run = judged
    data = collect(cfg, run)
    feedback = {}
    for i, rec in enumerate(data["images"]):
        metrics = {"vqa": (i % 3) / 2, "clip": 20.0 + i, "aesthetic": 4.0 + (i % 4) / 3, "cq": None}
        total = 0.5 * metrics["vqa"] + 0.01 * metrics["clip"] + 0.1 * metrics["aesthetic"]
        feedback[rec["image_id"]] = {
            "prompt_id": rec["prompt_id"],
            "judge": "metrics",
            "guide_version": None,
            **dict.fromkeys(("prompt_following", "fidelity", "aesthetic", "harmlessness")),
            "metrics": {**metrics, "total": total},
            "overall": total,
            "rank": 1 + i % 4,
        }
    mcfg = dataclasses.replace(cfg, annotate=dataclasses.replace(cfg.annotate, backend="metrics"))
    pairs = list(derive_pairs(mcfg, feedback, {r["image_id"]: r for r in data["images"]}))
    assert {p["aspect"] for p in pairs} == {"vqa", "clip", "aesthetic", "overall"}
    index = write_report(
        mcfg, run, status=run_status(run.root), data={**data, "feedback": feedback, "pairs": pairs}
    )
    page = index.read_text(encoding="utf-8")
    header = re.search(r'<table id="scores-generator_name"><thead>(.*?)</thead>', page).group(1)
    assert "mean metrics.clip" in header and "mean metrics.vqa" in header
    assert "mean prompt_following" not in header and "metrics.cq" not in header
    assert not (index.parent / "score_histogram.png").exists()
    assert "clip 20.00" in page  # sample captions carry the metric scores
    expected = _hand_win_rates(pairs, "guidance_scale")
    shown = {r[0]: r[5] for r in table_rows(page, "winrate-cfg")}
    assert shown == {f"{k:g}": f"{v[0]:.3f}" for k, v in expected.items()}
    for src in image_sources(page):
        assert (index.parent / src).is_file()


def test_build_without_feedback(tmp_path):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS[:2]) + "\n", encoding="utf-8")
    path = write_config(
        tmp_path,
        f"""\
        run_dir: {tmp_path / "run"}
        prompts: {{sources: [{{path: prompts.txt}}]}}
        generate: {{generators: [{{preset: tiny-sd15}}], guidance_scales: [5.0]}}
        annotate: {{backend: none}}
        """,
    )
    cfg = load_config(path)
    build(cfg, progress=False)
    run = open_run(cfg)
    index = write_report(cfg, run, status=run_status(run.root))
    page = index.read_text(encoding="utf-8")
    assert "no scores to show" in page and "there are no win rates" in page
    assert "No LLM calls were made" in page
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert pngs == ["failures.png"]
    samples = [s for s in image_sources(page) if s.startswith("samples/")]
    assert len(samples) == 2 and page.count("no feedback") >= 2
    assert all((index.parent / s).is_file() for s in samples)


def test_check_script_says_how_to_install_chromium_when_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CHROMIUM"}
    env["PATH"] = str(tmp_path)  # an empty folder: no chromium on PATH
    proc = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert "apt-get install -y chromium" in proc.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package")
def test_report_opens_in_headless_chromium(judged, tmp_path):
    cfg, run = judged
    index = write_report(cfg, run, status=run_status(run.root))
    shot = tmp_path / "shot.png"
    cmd = [sys.executable, str(CHECK_SCRIPT), str(run.root), "--screenshot", str(shot)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: no console errors" in proc.stdout and "18 (0 broken)" in proc.stdout
    assert shot.read_bytes().startswith(PNG_MAGIC)

    # the check does catch a broken page: a copy with one thumbnail missing
    copy = tmp_path / "copy"
    shutil.copytree(index.parent, copy / "report")
    next((copy / "report" / "samples").glob("*.png")).unlink()
    proc = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(copy), "--screenshot", str(tmp_path / "bad.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "ERR_FILE_NOT_FOUND" in proc.stdout and "image did not load: samples/" in proc.stdout


def test_win_rate_arithmetic_on_hand_made_pairs():
    from visionprefer.publish.report import head_to_head, win_rates

    def pair(g0, g1, label):
        return {"generator_0": g0, "generator_1": g1, "label_0": label}

    pairs = [
        pair("a", "b", 1.0),  # a beats b
        pair("a", "b", 0.5),  # tie
        pair("c", "a", 1.0),  # c beats a
        pair("b", "c", 0.0),  # c beats b
        pair("a", "a", 1.0),  # same generator: counts for nobody
    ]
    from visionprefer.evaluate.stats import win_rate_summary

    rates = win_rates(pairs, lambda p, side: p[f"generator_{side}"])
    cis = {g: rates[g].pop("ci") for g in rates}
    assert rates["a"] == {"wins": 1, "ties": 1, "losses": 1, "n": 3, "win_rate": 0.5}
    assert rates["b"] == {"wins": 0, "ties": 1, "losses": 2, "n": 3, "win_rate": 0.5 / 3}
    assert rates["c"] == {"wins": 2, "ties": 0, "losses": 0, "n": 2, "win_rate": 1.0}
    # Each interval is the paired bootstrap of the win-rate evaluator over the same outcomes.
    assert cis["a"] == win_rate_summary([1, 0, -1], n_bootstrap=1000, seed=0).bootstrap_ci
    assert cis["c"] == (1.0, 1.0)
    h2h = head_to_head(pairs, lambda p, side: p[f"generator_{side}"])
    assert h2h[("a", "b")]["win_rate"] == 0.75 and h2h[("b", "a")]["win_rate"] == 0.25
    assert h2h[("c", "a")]["win_rate"] == 1.0 and ("b", "b") not in h2h and ("a", "a") not in h2h


INTERVAL = r"\[(\d\.\d{3}), (\d\.\d{3})\]"


def _within(rate: str, low: str, high: str) -> bool:
    return float(low) <= float(rate) <= float(high) and float(low) < float(high)


def test_every_win_rate_in_the_report_and_the_card_carries_its_interval(judged):
    cfg, run = judged
    # The card of the build: a win-rate table per generator and per guidance scale, each rate with its CI.
    card = (run.root / "dataset" / "README.md").read_text(encoding="utf-8")
    tables = re.findall(r"\nWin rate per [^\n]*\n\n((?:\|[^\n]*\n)+)", card)
    assert len(tables) == 2
    for table in tables:
        rows = [line.strip("|").split(" | ") for line in table.strip().splitlines()[2:]]
        assert rows
        for row in rows:
            interval = re.fullmatch(INTERVAL, row[6].strip())
            assert interval and _within(row[5], *interval.groups()), row
    assert card.lower().count("win rate per") == 2

    # The report, with a third "generator" (tiny-sd21 at CFG 7.5 renamed) so that head to head is shown too.
    data = collect(cfg, run)
    images = [dict(r) for r in data["images"]]
    for r in images:
        if r["generator_name"] == "tiny-sd21" and r["guidance_scale"] == 7.5:
            r["generator_name"] = "tiny-sd21-high"
    page = write_report(cfg, run, status=run_status(run.root), data={**data, "images": images}).read_text(
        encoding="utf-8"
    )
    for table_id in ("winrate-generator", "winrate-cfg"):
        rows = table_rows(page, table_id)
        assert rows
        for row in rows:
            interval = re.fullmatch(INTERVAL, row[6])
            assert interval and _within(row[5], *interval.groups()), row
    cells = [c for row in table_rows(page, "head-to-head") for c in row[1:] if c != "–"]
    assert len(cells) == 6
    for cell in cells:
        m = re.fullmatch(r"(\d\.\d{3}) " + INTERVAL + r" \(N=\d+\)", cell)
        assert m and _within(*m.groups()), cell
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert text.count("(N=") == len(cells)  # no other, bare, win rate on the page
