"""``visionprefer push RUN_DIR --repo-id ORG/NAME``: upload the published folder to the Hugging Face Hub.

``create_repo`` (dataset, ``exist_ok``) then ``upload_folder``; re-running resumes an interrupted upload
(huggingface_hub 2 uploads through hf_xet, which skips what the Hub already has). The token comes from the
environment (``HF_TOKEN`` by default) or the user's stored login; it is passed to the client only and never
written anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StageOrderError
from ..rundir import RunDir, atomic_write_text
from .stage import dataset_dir

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLACEHOLDER = "ORG/NAME"


def push_dataset(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token_env: str = "HF_TOKEN",
    api: Any = None,
    commit_message: str | None = None,
) -> str:
    """Upload ``<run>/<publish.folder>`` to the dataset repo ``repo_id``; returns the repo URL."""
    if not REPO_ID.match(repo_id):
        raise ConfigError(f"--repo-id: {repo_id!r} is not of the form ORG/NAME")
    run = RunDir.open(run_dir)
    config = run.load_config()
    folder = dataset_dir(config, run)
    card = folder / "README.md"
    if not card.exists():
        raise StageOrderError(
            f"{run.root}: no published dataset yet; run `visionprefer publish CONFIG` first"
        )
    text = card.read_text(encoding="utf-8")
    if PLACEHOLDER in text:  # the card's usage examples name the repo once it is known
        atomic_write_text(card, text.replace(PLACEHOLDER, repo_id))
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=os.environ.get(token_env) or None)
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=commit_message
        or f"Upload visionprefer dataset ({run.meta().get('fingerprint', '?')})",
    )
    return f"https://huggingface.co/datasets/{repo_id}"
