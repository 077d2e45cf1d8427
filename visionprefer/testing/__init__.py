"""Test helpers that ship with the package: a scripted OpenAI-compatible server (see ``fake_openai``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class FakeOpenAIServer:
    """Starts ``visionprefer.testing.fake_openai`` in a subprocess on 127.0.0.1; use as a context manager.

    ``requests()`` returns what the server logged, so tests count what really reached it.
    """

    def __init__(
        self,
        *,
        responder: str = "polish",
        faults: str = "",
        latency: float = 0.0,
        timeout_sleep: float = 3.0,
        fault_seed: str = "0",
        model: str = "",
        max_seconds: float = 600,
        folder: Path | None = None,
        extra_args: list[str] | None = None,
    ):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="fake-openai-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "requests.jsonl"
        self.port_file = self.folder / "port"
        self.args = [
            "--port-file",
            str(self.port_file),
            "--responder",
            responder,
            "--faults",
            faults,
            "--latency",
            str(latency),
            "--timeout-sleep",
            str(timeout_sleep),
            "--fault-seed",
            fault_seed,
            "--log",
            str(self.log),
            "--max-seconds",
            str(max_seconds),
            "--model",
            model,
            *(extra_args or []),
        ]
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self.port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "visionprefer.testing.fake_openai", *self.args],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 30
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
