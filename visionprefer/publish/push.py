"""``visionprefer push RUN_DIR --repo-id ORG/NAME``: upload the published folders to the Hugging Face Hub.

Two dataset repositories: ``ORG/NAME`` gets ``<run>/<publish.folder>`` (every config), and ``ORG/NAME-dpo``
gets the companion ``<run>/<publish.folder>-dpo`` (the DPO export as its default config, for tools that take a
dataset name and no config name). For each, ``create_repo`` (dataset, ``exist_ok``) then ``upload_folder``;
re-running resumes an interrupted upload (huggingface_hub 2 uploads through hf_xet, which skips what the Hub
already has). The token comes from the environment (``HF_TOKEN`` by default) or the user's stored login; it
is passed to the client only and never written anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StageOrderError
from ..rundir import RunDir, atomic_write_text
from .stage import DPO_REPO_SUFFIX, dataset_dir, dpo_repo_dir

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLACEHOLDER = "ORG/NAME"
MAX_NAME = 96  # the Hub's limit on a repository name


def push_dataset(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token_env: str = "HF_TOKEN",
    api: Any = None,
    commit_message: str | None = None,
) -> str:
    """Upload ``<run>/<publish.folder>`` to the dataset repo ``repo_id`` and the companion
    ``<run>/<publish.folder>-dpo`` to ``repo_id + "-dpo"``; returns the main repo's URL."""
    if not REPO_ID.match(repo_id):
        raise ConfigError(f"--repo-id: {repo_id!r} is not of the form ORG/NAME")
    dpo_repo_id = repo_id + DPO_REPO_SUFFIX
    if len(dpo_repo_id.split("/", 1)[1]) > MAX_NAME:
        raise ConfigError(
            f"--repo-id: {repo_id!r} is too long for its companion {dpo_repo_id!r} (names of up to {MAX_NAME} characters)"
        )
    run = RunDir.open(run_dir)
    config = run.load_config()
    folders = [(dataset_dir(config, run), repo_id), (dpo_repo_dir(config, run), dpo_repo_id)]
    for folder, _ in folders:
        if not (folder / "README.md").exists():
            raise StageOrderError(
                f"{run.root}: no published dataset yet; run `visionprefer publish CONFIG` first"
            )
    for folder, _ in folders:  # the cards' usage examples name the repos once they are known
        card = folder / "README.md"
        text = card.read_text(encoding="utf-8")
        if PLACEHOLDER in text:
            atomic_write_text(card, text.replace(PLACEHOLDER, repo_id))
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=os.environ.get(token_env) or None)
    message = commit_message or f"Upload visionprefer dataset ({run.meta().get('fingerprint', '?')})"
    for folder, rid in folders:
        api.create_repo(repo_id=rid, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=rid, repo_type="dataset", commit_message=message)
    return f"https://huggingface.co/datasets/{repo_id}"
