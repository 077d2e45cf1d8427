"""Test isolation: every cache in a temporary folder, no hub access, one intra-op thread.

Tiny models are built once per session into a shared folder (``VISIONPREFER_TINY_DIR``) and loaded through
the same ``from_pretrained`` code a real run uses.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory, tiny_dir):
    hf_home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf_home / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("VISIONPREFER_TINY_DIR", str(tiny_dir))
    monkeypatch.setenv("VISIONPREFER_CACHE", str(hf_home / "visionprefer"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # datasets reads HF_DATASETS_CACHE once, at import: point the imported constant at this test's folder
    # too, so that no test is served another test's cached dataset.
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_home / "datasets")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def write_config(folder: Path, body: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def metrics_build(tmp_path: Path, prompts: list[str], metrics: str):
    """A loaded config: ``prompts`` through tiny-sd15 and tiny-sd21 at two scales (four images a prompt),
    annotated by the metrics backend with the tiny CLIP and aesthetic head plus ``metrics`` (YAML mapping
    entries, one per line)."""
    from visionprefer.config import load_config

    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    extra = textwrap.indent(textwrap.dedent(metrics).strip(), "    ")
    return load_config(
        write_config(
            tmp_path,
            f"run_dir: {tmp_path / 'run'}\n"
            "prompts: {sources: [{path: p.txt}]}\n"
            "generate: {generators: [{preset: tiny-sd15}, {preset: tiny-sd21}], guidance_scales: [3.0, 7.5]}\n"
            "annotate:\n  backend: metrics\n  metrics:\n"
            "    clip_model: tiny-clip\n    aesthetic_model: tiny-aesthetic\n    aesthetic_clip_model: tiny-clip\n"
            f"{extra}\n",
        )
    )


PROMPTS = [
    "a photo of a cat sitting on a red sofa",
    "two dogs playing in the snow",
    "a blue vintage car parked by the sea",
    "three apples and a pear on a wooden table",
    "a lighthouse on a cliff during a storm",
]


@pytest.fixture
def small_build(tmp_path):
    """A two-generator, two-scale build over five prompts (20 images in chunks of 3)."""
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")

    def make(scales=(3.0, 7.5), generators=("tiny-sd15", "tiny-sd21"), run_dir="run", batch_size=3, extra=""):
        gens = "\n".join(f"    - preset: {g}" for g in generators)
        body = (
            f"run_dir: {tmp_path / run_dir}\n"
            "prompts:\n  sources:\n    - path: prompts.txt\n"
            f"generate:\n  generators:\n{gens}\n"
            f"  guidance_scales: [{', '.join(map(str, scales))}]\n"
            f"  batch_size: {batch_size}\n" + extra
        )
        return write_config(tmp_path, body, name=f"{run_dir}.yaml")

    return make


@pytest.fixture
def fake_llm(tmp_path):
    """Factory: start a scripted OpenAI-compatible server on 127.0.0.1 (stopped after the test)."""
    from visionprefer.testing import FakeOpenAIServer

    servers = []

    def start(**kwargs):
        kwargs.setdefault("max_seconds", 300)
        server = FakeOpenAIServer(folder=tmp_path / f"server{len(servers)}", **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def kill_after_committed(command: list[str], cache: Path, committed: int) -> set[str]:
    """Run ``visionprefer <command>`` in a subprocess, SIGKILL it once ``cache`` (a response cache file) holds
    ``committed`` answers, and return the keys committed by then."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from visionprefer.rundir import read_jsonl

    proc = subprocess.Popen(
        [sys.executable, "-m", "visionprefer", *command],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not cache.exists() or len(cache.read_bytes().splitlines()) < committed:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return {r["key"] for r in read_jsonl(cache)}
