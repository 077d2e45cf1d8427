"""visionprefer train-reward: it learns, it resumes after kill -9, it runs on two processes, it refuses bad input.

The data is synthetic (``visionprefer.reward.synthetic``): each prompt names a colour and the image of that
colour wins, so the rule is visible to a CLIP and symmetric in the colours (a prompt-blind model is at
chance). Models are the 32 px ``tiny-clip``. Subprocess runs share one reference run (one process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visionprefer.reward.synthetic import synthetic_rows, write_pairs_dataset

STEPS = 120
RUN_CONFIG = """\
reward:
  dataset: {dataset}
  base_model: tiny-clip
  max_steps: {steps}
  batch_size: 8
  learning_rate: 0.001
  save_every: 20
  validation_share: 0.2
  eval_batch_size: 32
  seed: 3
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reward-data") / "pairs-ds"
    return write_pairs_dataset(
        folder, {"train": synthetic_rows(400, seed=1), "test": synthetic_rows(200, seed=2)}
    )


def _env(tiny_dir: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(
        VISIONPREFER_TINY_DIR=str(tiny_dir),
        HF_HOME=str(home),
        HF_DATASETS_CACHE=str(home / "datasets"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, dataset) -> Path:
    path = tmp_path_factory.mktemp("reward-config") / "reward.yaml"
    path.write_text(RUN_CONFIG.format(dataset=dataset, steps=STEPS), encoding="utf-8")
    return path


def _command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "visionprefer", "train-reward", str(config), "--out", str(out), "-q"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_dir, run_config) -> Path:
    """One uninterrupted single-process run of RUN_CONFIG."""
    root = tmp_path_factory.mktemp("reward-ref")
    out = root / "model"
    done = subprocess.run(
        _command(run_config, out),
        env=_env(tiny_dir, root / "hf"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return out


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _steps(folder: Path) -> list[dict]:
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("pairs_per_s", "seconds")} for r in lines]


def test_training_learns_the_rule_on_held_out_pairs(tmp_path, dataset):
    import torch

    from visionprefer.reward import pair_accuracy, reward_config_from_dict, train_reward

    torch.set_num_threads(1)
    before = pair_accuracy("tiny-clip", str(dataset), split="test")
    cfg = reward_config_from_dict(
        dict(
            dataset=str(dataset),
            base_model="tiny-clip",
            output_dir=str(tmp_path / "model"),
            max_steps=100,
            batch_size=16,
            learning_rate=1e-3,
            save_every=50,
            validation_share=0.2,
        )
    )
    result = train_reward(cfg, progress=False)
    after = pair_accuracy(str(tmp_path / "model"), str(dataset), split="test")
    print(f"held-out accuracy: {before['accuracy']:.4f} before, {after['accuracy']:.4f} after")
    assert abs(before["accuracy"] - 0.5) < 0.1
    assert after["accuracy"] >= 0.9
    # the run's own validation (held-out prompts of the train split) saw the same improvement
    assert result.validation_source.startswith("held-out 20%")
    assert result.sizes["train"] + result.sizes["validation"] == 400 and result.sizes["validation"] > 0
    assert result.validation_accuracy >= 0.9 and result.best_step > 0
    # a normal save_pretrained folder with a card; the checkpoints are gone
    from transformers import AutoModel, AutoProcessor

    folder = tmp_path / "model"
    assert type(AutoModel.from_pretrained(folder)).__name__ == "CLIPModel"
    AutoProcessor.from_pretrained(folder)
    card = (folder / "README.md").read_text()
    assert "validation accuracy" in card and "100 × 16 pairs" in card and str(result.sizes["train"]) in card
    assert not (folder / "checkpoints").exists()
    steps = [r for r in _steps(folder) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 101))
    # the same command again finds the run finished
    again = train_reward(cfg, progress=False)
    assert again.already_done and again.validation_accuracy == result.validation_accuracy


def test_kill_9_then_resume_ends_with_the_same_weights(tmp_path, tiny_dir, run_config, reference):
    out = tmp_path / "model"
    env = _env(tiny_dir, tmp_path / "hf")
    proc = subprocess.Popen(
        _command(run_config, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("checkpoint-*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "model.safetensors").exists()
    killed_at = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")]
    done = subprocess.run(
        _command(run_config, out)[:-1], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert f"resumed from step {max(killed_at)}" in done.stdout
    diff = _max_diff(_weights(reference), _weights(out))
    print(f"killed after checkpoint {max(killed_at)}; max |param diff| vs uninterrupted: {diff:.3g}")
    assert diff <= 1e-6
    assert _steps(out) == _steps(reference)  # every step's loss and every validation, once each
    marker = json.loads((out / "reward_run.json").read_text())
    assert marker["finished"] and marker["result"]["best_step"] > max(killed_at)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_the_same_model_as_one(tmp_path, tiny_dir, run_config, reference):
    out = tmp_path / "model"
    launch = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "visionprefer", "train-reward", str(run_config), "--out", str(out), "-q",
    ]  # fmt: skip
    done = subprocess.run(
        launch, env=_env(tiny_dir, tmp_path / "hf"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    diff = _max_diff(_weights(reference), _weights(out))
    ref, two = _steps(reference), _steps(out)
    loss_diff = max(abs(a.get("loss", 0) - b.get("loss", 0)) for a, b in zip(ref, two, strict=True))
    print(
        f"1 vs 2 processes, same global batch: max |param diff| {diff:.3g}, max |step loss diff| {loss_diff:.3g}"
    )
    # Tolerance: the two layouts sum the gradients in another order (rank means, then the all-reduce), so
    # they agree to float rounding at first (step 1: ~6e-8) and Adam's sign-like updates let that grow
    # over 120 steps at lr 1e-3. Early steps agree to rounding; the end within one Adam step (lr = 1e-3).
    early = max(
        abs(a["loss"] - b["loss"])
        for a, b in zip(ref, two, strict=True)
        if 0 < a["step"] <= 10 and "loss" in a
    )
    print(f"  max |step loss diff| over steps 1-10: {early:.3g}")
    assert early < 1e-5
    assert diff < 1e-3
    assert loss_diff < 1e-2
    r1 = json.loads((reference / "reward_run.json").read_text())["result"]
    r2 = json.loads((out / "reward_run.json").read_text())["result"]
    assert r1["best_step"] == r2["best_step"] and r1["sizes"] == r2["sizes"]


# --------------------------------------------------------------------------------------------- bad input
def _cli(capsys, *argv: str) -> tuple[int, str]:
    from visionprefer.cli import main

    capsys.readouterr()  # what the test itself printed (parquet writing) is not the command's
    code = main(["train-reward", *argv, "-q"])
    return code, capsys.readouterr().err


def _assert_refused(capsys, out: Path, argv: list[str], needle: str) -> None:
    code, err = _cli(capsys, *argv, "--out", str(out))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("visionprefer: error: ") and needle in err, err
    assert not out.exists()  # refused before anything was written or trained


def test_refuses_a_dataset_without_the_needed_columns_or_split(tmp_path, capsys):
    rows = synthetic_rows(20, seed=5)
    no_label = write_pairs_dataset(tmp_path / "no-label", {"train": rows}, drop=("label_0",))
    _assert_refused(
        capsys, tmp_path / "a", ["--dataset", str(no_label), "--base-model", "tiny-clip"], "label_0"
    )
    only_test = write_pairs_dataset(tmp_path / "only-test", {"test": rows})
    _assert_refused(
        capsys, tmp_path / "b", ["--dataset", str(only_test), "--base-model", "tiny-clip"], "no split 'train'"
    )
    _assert_refused(
        capsys, tmp_path / "c", ["--dataset", str(tmp_path / "nothing"), "--base-model", "tiny-clip"], "pairs"
    )
    ok = write_pairs_dataset(tmp_path / "ok", {"train": rows})
    _assert_refused(
        capsys,
        tmp_path / "d",
        ["--dataset", str(ok), "--base-model", "tiny-clip", "--aspect", "fidelity"],
        "no pairs of aspect 'fidelity'",
    )


def test_refuses_labels_that_are_all_ties(tmp_path, capsys):
    rows = [dict(r, label_0=0.5) for r in synthetic_rows(20, seed=6)]
    ties = write_pairs_dataset(tmp_path / "ties", {"train": rows})
    _assert_refused(capsys, tmp_path / "a", ["--dataset", str(ties), "--base-model", "tiny-clip"], "ties")


def test_refuses_a_base_model_that_is_not_clip_like(tmp_path, capsys, dataset):
    from visionprefer.models.tiny import tiny_model_path

    tiny_model_path("tiny-text-embed")  # built beforehand: its first save prints a progress bar
    _assert_refused(
        capsys,
        tmp_path / "a",
        ["--dataset", str(dataset), "--base-model", "tiny-text-embed"],
        "not CLIP-like",
    )


def test_config_errors_name_the_key(tmp_path, capsys):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("reward: {dataset: x, base_model: tiny-clip, output_dir: o, batch_sise: 3}\n")
    code, err = _cli(capsys, str(cfg))
    assert code == 2 and "reward.batch_sise: unknown key" in err
    cfg.write_text("reward: {dataset: x, base_model: tiny-clip, output_dir: o, aspect: beauty}\n")
    code, err = _cli(capsys, str(cfg))
    assert code == 2 and "reward.aspect" in err


def test_lora_without_peft_is_a_one_line_error(tmp_path, capsys, dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed: `import peft` fails
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"reward: {{dataset: {dataset}, base_model: tiny-clip, lora: {{r: 4}}}}\n")
    _assert_refused(capsys, tmp_path / "out", [str(cfg)], "peft")


def test_the_trained_folder_scores_in_eval_agreement_and_as_build_feedback(
    tmp_path, reference, dataset, capsys
):
    """The trained reward model is a PickScore-style CLIP folder: `eval agreement --scorer pickscore
    --scorer-model FOLDER` scores a held-out set with it (and agrees with the trainer's own accuracy), the
    PickScore scorer that `eval score` and metric feedback use loads it, and a build uses it as feedback."""
    import torch
    from PIL import Image

    from visionprefer.build import build
    from visionprefer.cli import main
    from visionprefer.reward import pair_accuracy
    from visionprefer.scorers.pickscore import PickScoreScorer

    from .conftest import metrics_build

    torch.set_num_threads(1)
    own = pair_accuracy(str(reference), str(dataset), split="test")
    test_file = dataset / "data" / "pairs" / "test-00000-of-00001.parquet"
    out = tmp_path / "agree"
    assert (
        main(
            [
                "eval",
                "agreement",
                "--testset",
                "pickapic_v1_test",
                "--data",
                str(test_file),
                "--scorer",
                "pickscore",
                "--scorer-model",
                str(reference),
                "--device",
                "cpu",
                "--bootstrap",
                "50",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    result = json.loads((out / "agreement_summary.json").read_text())["result"]
    assert result["protocol"] == "pairwise_excl_ties" and result["n_pairs"] > 150
    assert result["value"] >= 0.8 and abs(result["value"] - own["accuracy"]) < 0.02
    # The scorer eval score and metric feedback build from `pickscore_model` loads the folder as is.
    scorer = PickScoreScorer(str(reference), processor_id=None, device="cpu")
    red, blue = Image.new("RGB", (32, 32), (200, 40, 40)), Image.new("RGB", (32, 32), (40, 40, 210))
    scores = scorer.score(["a red square 1", "a red square 1"], [red, blue])
    assert scores.shape == (2,) and scores[0] > scores[1]  # it learnt the rule
    # eval score with the folder as its PickScore model: the matching image scores higher.
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (tmp_path / "prompts.txt").write_text("a red square 1\na blue square 2\n", encoding="utf-8")
    red.save(imgs / "00000.png")
    red.save(imgs / "00001.png")  # prompt 2 asks for blue
    argv = ["eval", "score", "--prompts", str(tmp_path / "prompts.txt"), "--images", str(imgs), "--metrics"]
    argv += ["pickscore", "--pickscore-model", str(reference), "--pickscore-processor", str(reference)]
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "score"), "-q"]) == 0
    items = [json.loads(x) for x in (tmp_path / "score" / "score_items.jsonl").read_text().splitlines()]
    assert items[0]["pickscore"] > items[1]["pickscore"]
    (tmp_path / "b").mkdir()
    cfg = metrics_build(
        tmp_path / "b",
        ["a red square 1", "a blue square 2"],
        f"vqa_model: tiny-blip\npickscore_model: '{reference}'\nweights: {{pickscore: 1.0}}",
    )
    report = build(cfg, progress=False).stages["annotate"]
    assert (report.made, report.failed) == (8, 0)


def test_lora_training_learns_and_saves_a_plain_clip_folder(tmp_path, dataset):
    """reward.lora: adapters on the towers' attention projections learn the rule too, and are merged into
    the saved model, which loads as a plain CLIP (no peft needed to use it)."""
    import torch
    from transformers import CLIPModel

    from visionprefer.reward import pair_accuracy, reward_config_from_dict, train_reward

    torch.set_num_threads(1)
    cfg = reward_config_from_dict(
        dict(
            dataset=str(dataset),
            base_model="tiny-clip",
            output_dir=str(tmp_path / "lora"),
            max_steps=100,
            batch_size=16,
            learning_rate=3e-3,
            save_every=50,
            validation_share=0.2,
            lora={"r": 8},
        )
    )
    train_reward(cfg, progress=False)
    model = CLIPModel.from_pretrained(tmp_path / "lora")
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged
    after = pair_accuracy(str(tmp_path / "lora"), str(dataset), split="test")["accuracy"]
    before = pair_accuracy("tiny-clip", str(dataset), split="test")["accuracy"]
    assert after >= before + 0.2, (before, after)
