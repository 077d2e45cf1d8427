"""The built wheel (not the source tree) carries every file the package reads at run time."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import REPO


def test_wheel_ships_data_and_runs_quickstart(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("visionprefer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "visionprefer/py.typed",
        "visionprefer/_data/DATASET_CARD.md",
        "visionprefer/publish/templates/report.html.j2",
        "visionprefer/leaderboard/templates/leaderboard.html.j2",
        "visionprefer/_data/annotation_guides/README.md",
        "visionprefer/_data/examples/quickstart.yaml",
        "visionprefer/_data/examples/quickstart_prompts.txt",
    ):
        assert required in names, required

    # Install the wheel alone into a fresh target and run from a folder outside the repository, so the
    # package (and its data) can only come from the wheel.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import visionprefer; print(visionprefer.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(target)
    done = subprocess.run(
        [sys.executable, "-m", "visionprefer", "quickstart", "--out", "qs"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random-weight" in done.stdout
    status = subprocess.run(
        [sys.executable, "-m", "visionprefer", "status", "qs", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    stages = json.loads(status)["stages"]
    assert stages["generate"]["done"] == stages["generate"]["planned"] == 48
    assert stages["generate"]["pending"] == 0
