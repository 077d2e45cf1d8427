"""What a published folder is and whether it is up to date: its paths, the settings and inputs it was
made from, and ``status``'s publish row.

Light on purpose: :mod:`visionprefer.status` reads the publish state from here, and neither this module nor
what it imports at the top level imports :mod:`visionprefer.status` or the report (the publish stage and
the report import ``status``, not the other way round).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import BuildConfig
from ..rundir import RunDir, StoredRecords
from .schema import split_names

DPO_FOLDER = "dpo"
DPO_REPO_SUFFIX = "-dpo"
"""The companion folder (and Hub repository) of the DPO export: ``<publish.folder>-dpo``, ``ORG/NAME-dpo``."""
LICENSE_FILE = "LICENSE.md"


def dataset_dir(config: BuildConfig, run: RunDir) -> Path:
    return run.root / config.publish.folder


def dpo_repo_dir(config: BuildConfig, run: RunDir) -> Path:
    """The companion folder: the DPO export alone, as the default config of its own repository."""
    return run.root / (config.publish.folder + DPO_REPO_SUFFIX)


def config_dir(name: str) -> str:
    """Where one config's shards sit in the main folder (``None`` name: the companion's ``data``)."""
    return f"{DPO_FOLDER}/data" if name == "dpo" else f"data/{name}"


def config_paths(name: str, split: str = "train") -> str:
    """The ``data_files`` pattern of one config's split in the main folder."""
    return f"{config_dir(name)}/{split}-*.parquet"


def companion_paths(split: str) -> str:
    """The ``data_files`` pattern of one split of the companion's default config."""
    return f"data/{split}-*.parquet"


def published_path(run: RunDir) -> Path:
    """What the last finished publish was made from (``status`` compares it with the run as it is now)."""
    return run.root / "publish" / "published.json"


def publish_settings(config: BuildConfig) -> str:
    """Digest of the settings that decide what publish writes from a given set of stage outputs: which
    images are planned (generator fingerprints, scales, samples, seed), which annotations count (judge or
    metric keys) and how they aggregate (weights), and the publish section itself. Settings that enter no
    key (concurrency, devices, rate limits, batch sizes) are left out, so changing them leaves a published
    folder up to date."""
    from ..config import fingerprint
    from ..generate.plan import resolve_generators

    gc, ann = config.generate, config.annotate
    plan = [
        [spec.name, spec.fingerprint(), sorted(set(spec.guidance_scales))] for spec in resolve_generators(gc)
    ]
    annotate: dict[str, Any] = {"backend": ann.backend, "aspect_weights": ann.aspect_weights}
    if ann.backend == "judge":
        from ..annotate.judge import load_guide

        j = ann.judge
        annotate["judge"] = [
            j.llm.model,
            load_guide(j)[1],
            j.score_min,
            j.score_max,
            j.group_size,
            j.both_orders,
        ]
    elif ann.backend == "metrics":
        from ..annotate.metrics import metrics_fingerprint

        annotate["metrics"] = [metrics_fingerprint(ann.metrics), ann.metrics.weights]
    return fingerprint(
        {
            "plan": [plan, gc.cfg_mode, gc.images_per_prompt, gc.seed],
            "annotate": annotate,
            "publish": dataclasses.asdict(config.publish),
        }
    )


def input_signature(run: RunDir) -> dict[str, list[int]]:
    """Size and modification time of every file the dataset is made from (prompts, the generate and
    annotate done logs, the pairs): when any of them changes, the published folder is out of date."""
    from ..pairs.stage import pairs_path

    files = [run.prompts_file, pairs_path(run)]
    for stage, key in (("generate", "image_id"), ("annotate", "annotation_id")):
        files.extend(run.stage_log(stage, key).done_paths())
    out = {}
    for path in files:
        if path.exists():
            st = path.stat()
            out[str(path.relative_to(run.root))] = [st.st_size, st.st_mtime_ns]
    return out


def publish_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    """``status`` of the publish stage: ``done`` (the folder matches the run), ``stale`` (stage outputs or
    settings that decide the dataset changed since: publish again), ``interrupted`` (a publish started but
    did not finish) or ``not run``; ``done`` counts the rows of the ``images`` config (Parquet footers)."""
    folder = dataset_dir(config, run)
    row: dict[str, Any] = {"state": "not run", "done": 0, "pending": None, "failed": 0, "folder": str(folder)}
    try:
        last = json.loads(published_path(run).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        last = None
    if not (folder / "README.md").exists() or not (dpo_repo_dir(config, run) / "README.md").exists():
        if folder.exists():  # the companion's card comes first, the main one last
            row["state"] = "interrupted"
        return row
    row["done"] = split_sizes(folder, "images")["num_rows"]  # every split
    if last is None:  # a folder published by an older version, or copied in: nothing to compare with
        row["state"] = "done"
        return row
    same = (
        last.get("folder") == str(folder.relative_to(run.root))
        and last.get("settings") == publish_settings(config)
        and last.get("inputs") == input_signature(run)
    )
    row["state"] = "done" if same else "stale"
    return row


def split_sizes(folder: Path, name: str, split: str | None = None) -> dict[str, int]:
    """One config's shards in the main folder (one split, or all of them), from the Parquet footers:
    ``num_rows`` and ``download_size`` (the files)."""
    import pyarrow.parquet as pq

    rows = download = 0
    for s in [split] if split else split_names(name):
        for path in sorted(folder.glob(config_paths(name, s))):
            rows += pq.ParquetFile(path).metadata.num_rows
            download += path.stat().st_size
    return {"num_rows": rows, "download_size": download}


def select(
    records: Sequence[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> Sequence[dict[str, Any]]:
    """The records for which ``keep`` is true, in the same form: records left on disk stay there (only the
    addresses of the kept ones are copied), a list stays a list."""
    if isinstance(records, StoredRecords):
        return records.select(keep)
    return [r for r in records if keep(r)]


def partition(
    records: Sequence[dict[str, Any]], buckets: Callable[[dict[str, Any]], Iterable[int]], n: int
) -> list[Sequence[dict[str, Any]]]:
    """``records`` in ``n`` sequences of the same form, in one pass: each record goes to every bucket of
    ``buckets(record)``, in order (``select`` of ``n`` conditions at the price of one)."""
    if isinstance(records, StoredRecords):
        return list(records.partition(buckets, n))
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for r in records:
        for b in buckets(r):
            out[b].append(r)
    return list(out)
