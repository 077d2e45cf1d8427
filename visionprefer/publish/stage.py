"""The publish stage: the run directory as Hugging Face dataset folders that ``load_dataset`` reads as they are.

Two folders, one per Hub repository ``visionprefer push`` uploads::

    <run>/<publish.folder>/                 repo ORG/NAME
        README.md                           the dataset card (YAML: configs, splits, features, sizes, licence)
        LICENSE.md                          the generators' licences (with ``license: other``)
        data/images/<split>-*.parquet       default config
        data/prompts/<split>-*.parquet
        data/pairs/<split>-*.parquet
        data/agfsync/<split>-*.parquet      with ``publish.formats: [agfsync]``
        dpo/data/<split>-*.parquet          config ``dpo`` (hard links to the companion's shards)
    <run>/<publish.folder>-dpo/             repo ORG/NAME-dpo: the DPO export as its default config
        README.md, LICENSE.md
        data/<split>-*.parquet              train, validation, test, validation_unique, test_unique

The companion exists because a Hub id has at most one ``/`` (``datasets`` takes ``ORG/NAME/dpo`` for a local
path) and the diffusers Diffusion-DPO example passes no config name: ``--dataset_name ORG/NAME-dpo`` loads
the DPO export as it is. Splits are by prompt (:mod:`.splits`), the same in every config.

Rows are in a deterministic order (prompts in prompt-file order; images and pairs grouped by prompt, then
by key), and each shard is written atomically, so publishing the same run twice gives the same files. The
cards are written last: a folder without ``README.md`` is a publish that did not finish.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from ..config import ASPECTS, BuildConfig
from ..rundir import RunDir, atomic_write_text, file_mode
from .data import (  # noqa: F401  (collect and its helpers lived here)
    FeedbackSummary,
    JudgeFeedback,
    _finished_images,
    _in_row_order,
    collect,
    feedback_along,
    feedback_summary,
)
from .schema import (
    CONDITIONS,
    FEEDBACK,
    METRIC_FIELDS,
    RECORD,
    SPLITS,
    UNIQUE_SPLITS,
    column_names,
    columns,
    config_names,
    features,
    present_splits,
    public_model_id,
    split_names,
)
from .splits import splitter, unique_rank
from .state import (  # noqa: F401  (the publish state, importable from here as before)
    DPO_FOLDER,
    DPO_REPO_SUFFIX,
    LICENSE_FILE,
    companion_paths,
    config_dir,
    config_paths,
    dataset_dir,
    dpo_repo_dir,
    input_signature,
    partition,
    publish_settings,
    publish_status,
    published_path,
    select,
    split_sizes,
)
from .writer import remove_shards, write_shards


@dataclass
class PublishReport:
    folder: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    report: str = ""
    failed: int = 0


def _image_cell(run: RunDir, rec_file: str) -> dict[str, Any]:
    path = run.root / rec_file
    return {"bytes": path.read_bytes(), "path": path.name}


def image_rows(
    run: RunDir,
    images: Iterable[dict[str, Any]],
    feedback: Mapping[str, dict[str, Any]] | JudgeFeedback,
    prompts: Iterable[dict[str, Any]] = (),
):
    """Rows of the ``images`` config: the generation record's and the feedback's fields named in the column
    table, and the derived columns (the image, its public model id, the metrics struct). ``feedback`` is
    ``collect``'s (a dict by image id, or a :class:`~.data.JudgeFeedback` read along the images, which
    needs ``prompts``: those of ``images``, in row order)."""
    from_record, from_feedback = column_names("images", RECORD), column_names("images", FEEDBACK)
    for rec, fb in feedback_along(feedback, images, prompts):
        fb = fb or {}
        metrics = fb.get("metrics")
        yield {
            **{k: rec.get(k) for k in from_record},
            **{k: fb.get(k) for k in from_feedback},
            "image": _image_cell(run, rec["file"]),
            "model_id": public_model_id(rec.get("model_id")),
            "metrics": {k: metrics.get(k) for k in METRIC_FIELDS} if metrics else None,
        }


def pair_rows(run: RunDir, pairs: Iterable[dict[str, Any]], *, images: bool = True):
    """Rows of the ``pairs`` config; without ``images``, ``image_0``/``image_1`` are null (see
    ``publish.pair_images``)."""
    from_record = column_names("pairs", RECORD)
    for p in pairs:
        row = {k: p[k] for k in from_record}
        row["image_0"] = _image_cell(run, p["file_0"]) if images else None
        row["image_1"] = _image_cell(run, p["file_1"]) if images else None
        yield row


def ranking_id(pair_id: str) -> int:
    """Pick-a-Pic's int64 ``ranking_id`` of a pair: the first 15 hex digits of its key (60 bits)."""
    return int(pair_id[:15], 16)


def dpo_rows(
    config: BuildConfig,
    run: RunDir,
    pairs: Iterable[dict[str, Any]],
    per_prompt: Callable[[dict[str, Any]], int] | None = None,
):
    """Rows of the ``dpo`` config: the pair record's fields named in the column table, and the Pick-a-Pic
    columns derived from the pair (caption, encoded image bytes, ``label_1``, uids, ``ranking_id``,
    ``best_image_uid``, ``has_label``, ``are_different``). ``per_prompt(pair)`` is the pair's
    ``num_example_per_prompt`` (rows of its prompt in the split written; 1 without it)."""
    from_record = column_names("dpo", RECORD)
    for p in pairs:
        b0, b1 = (run.root / p["file_0"]).read_bytes(), (run.root / p["file_1"]).read_bytes()
        different = b0 != b1
        if config.publish.dpo_image_format == "jpeg":
            b0, b1 = _jpeg(b0), _jpeg(b1)
        label_0 = float(p["label_0"])
        yield {
            **{k: p[k] for k in from_record},
            "caption": p["prompt"],
            "jpg_0": b0,
            "jpg_1": b1,
            "label_0": label_0,
            "label_1": 1.0 - label_0,
            "image_0_uid": p["image_id_0"],
            "image_1_uid": p["image_id_1"],
            "ranking_id": ranking_id(p["pair_id"]),
            "best_image_uid": p["image_id_0"] if label_0 == 1.0 else p["image_id_1"],
            "has_label": True,
            "are_different": different,
            "num_example_per_prompt": per_prompt(p) if per_prompt else 1,
        }


def agfsync_rows(run: RunDir, pairs: Iterable[dict[str, Any]]):
    """Rows of the ``agfsync`` config (AGFSync's released DPO format): the caption, the preferred image as
    ``good_jpg`` and the other as ``bad_jpg`` (``Image()`` cells of the stored files), and the keys."""
    from_record = column_names("agfsync", RECORD)
    for p in pairs:
        good, bad = ("file_0", "file_1") if p["label_0"] == 1.0 else ("file_1", "file_0")
        yield {
            **{k: p[k] for k in from_record},
            "caption": p["prompt"],
            "good_jpg": _image_cell(run, p[good]),
            "bad_jpg": _image_cell(run, p[bad]),
        }


def prompt_rows(prompts: Iterable[dict[str, Any]]):
    """Rows of the ``prompts`` config: the prompt record's fields named in the column table."""
    names = column_names("prompts", RECORD)
    for p in prompts:
        yield {k: p.get(k) for k in names}


def _jpeg(data: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(io.BytesIO(data)) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def dpo_pairs(config: BuildConfig, pairs: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    from ..pairs.stage import is_dpo_pair

    return select(pairs, lambda p: is_dpo_pair(p, config.publish.dpo_aspect))


# --------------------------------------------------------------------------------------------- stage
def unique_choice(config: BuildConfig, dpo: Iterable[dict[str, Any]], split_of: Callable[[str], str]):
    """The ``pair_id`` of each validation or test prompt's one example in the ``*_unique`` splits."""
    best: dict[str, tuple[str, str]] = {}
    seed = config.publish.split_seed
    for p in dpo:
        if split_of(p["prompt_id"]) == "train":
            continue
        rank = unique_rank(p["pair_id"], seed)
        if p["prompt_id"] not in best or rank < best[p["prompt_id"]][0]:
            best[p["prompt_id"]] = (rank, p["pair_id"])
    return {pid: pair_id for pid, (_, pair_id) in best.items()}


def publish_dataset(
    config: BuildConfig, run: RunDir, *, status_of: Callable[[], dict[str, Any]], progress: bool = True
) -> PublishReport:
    """Write the dataset folders, their cards and the report. ``status_of`` returns the run's
    :func:`~visionprefer.stages.run_status` (asked once, after the data files are written, for the card
    and the report: it reads the whole run)."""
    from ..progress import progress_bar

    data = collect(config, run)
    out, dpo_out = dataset_dir(config, run), dpo_repo_dir(config, run)
    for folder in (out, dpo_out):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").unlink(missing_ok=True)  # written last: its presence marks a finished publish
    for old in (out / DPO_FOLDER).glob("*.parquet"):  # the layout before splits: dpo/train-*.parquet
        old.unlink()
    split_of = splitter(config)
    dpo = dpo_pairs(config, data["pairs"])
    per_prompt = Counter(p["prompt_id"] for p in dpo)
    chosen = unique_choice(config, dpo, split_of)
    names = config_names(config)

    partitions: dict[tuple[int, tuple[str, ...]], dict[str, Sequence[dict[str, Any]]]] = {}

    def by_split(
        records: Sequence[dict[str, Any]], splits: tuple[str, ...]
    ) -> dict[str, Sequence[dict[str, Any]]]:
        """``records`` of each split (``*_unique``: the prompt's chosen pair), in one pass over them; the
        ``dpo`` and ``agfsync`` configs share theirs."""
        key = (id(records), splits)
        if key not in partitions:
            index = {s: i for i, s in enumerate(splits)}

            def buckets(r: dict[str, Any]) -> list[int]:
                split = split_of(r["prompt_id"])
                out = [index[split]] if split in index else []
                unique = index.get(f"{split}_unique")
                if unique is not None and chosen.get(r["prompt_id"]) == r["pair_id"]:
                    out.append(unique)
                return out

            parts = partition(records, buckets, len(splits))
            partitions[key] = dict(zip(splits, parts, strict=True))
        return partitions[key]

    sources: dict[str, tuple[Sequence[dict[str, Any]], Callable[[Sequence[dict[str, Any]], str], Any]]] = {
        "prompts": (data["prompts"], lambda recs, _: prompt_rows(recs)),
        "images": (
            data["images"],
            lambda recs, split: image_rows(
                run,
                recs,
                data["feedback"],
                by_split(data["prompts"], SPLITS)[split],
            ),
        ),
        "pairs": (data["pairs"], lambda recs, _: pair_rows(run, recs, images=config.publish.pair_images)),
        "dpo": (
            dpo,
            lambda recs, split: dpo_rows(
                config, run, recs, None if split in UNIQUE_SPLITS else lambda p: per_prompt[p["prompt_id"]]
            ),
        ),
        "agfsync": (dpo, lambda recs, _: agfsync_rows(run, recs)),
    }
    selected = {name: by_split(sources[name][0], split_names(name)) for name in names}
    partitions.clear()  # each config's splits are dropped once written (below)
    split_counts = {
        name: {split: len(recs) for split, recs in by_split.items()} for name, by_split in selected.items()
    }
    counts = {name: sum(split_counts[name][s] for s in SPLITS) for name in names}
    per_shard = config.publish.rows_per_shard
    total = sum(sum(c.values()) for c in split_counts.values())
    with progress_bar(total=total, desc="publish", unit="row", enabled=progress) as bar:

        def tick() -> None:
            bar.update(1)

        for name in names:
            folder = dpo_out / "data" if name == "dpo" else out / config_dir(name)
            present = present_splits(name, split_counts[name])
            for split, recs in selected[name].items():
                if split not in present:
                    remove_shards(folder, split)
                    continue
                write_shards(
                    folder,
                    features(name),
                    sources[name][1](recs, split),
                    total=len(recs),
                    rows_per_shard=max(per_shard, 10_000) if name == "prompts" else per_shard,
                    prefix=split,
                    on_row=tick,
                )
            selected[name] = {}
    _link_folder(dpo_out / "data", out / config_dir("dpo"))
    for old in (out / "data").iterdir():  # a config no longer published (agfsync dropped from formats)
        if old.is_dir() and old.name not in names:
            for f in old.glob("*.parquet"):
                f.unlink()
            with contextlib.suppress(OSError):
                old.rmdir()
    from .report import write_report

    status = status_of()  # after the data files: the card and the report describe what was published
    data["split_counts"] = split_counts
    licence = licence_text(config)
    for folder in (out, dpo_out):
        if licence is not None:
            atomic_write_text(folder / LICENSE_FILE, licence)
        else:
            (folder / LICENSE_FILE).unlink(missing_ok=True)
    atomic_write_text(
        dpo_out / "README.md", render_card(config, run, data, counts, status=status, companion=True)
    )
    card = render_card(config, run, data, counts, status=status)
    atomic_write_text(out / "README.md", card)
    report_path = write_report(config, run, data=data, status=status)
    atomic_write_text(
        published_path(run),
        json.dumps(
            {
                "folder": str(out.relative_to(run.root)),
                "dpo_folder": str(dpo_out.relative_to(run.root)),
                "counts": counts,
                "split_counts": split_counts,
                "settings": publish_settings(config),
                "inputs": input_signature(run),
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
    )
    return PublishReport(folder=str(out), counts=counts, report=str(report_path))


def _link_folder(source: Path, target: Path) -> None:
    """Make ``target`` hold the Parquet files of ``source`` (hard links, or copies where links fail), and
    nothing else: the main folder's ``dpo`` config and the companion share their shards on disk."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in source.glob("*.parquet")}
    for old in target.glob("*.parquet"):
        if old.name not in names:
            old.unlink()
    for name in sorted(names):
        dest = target / name
        tmp = dest.with_name(f".{name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(source / name, tmp)
        except OSError:
            shutil.copyfile(source / name, tmp)
            os.chmod(tmp, file_mode())
        os.replace(tmp, dest)


def licence_text(config: BuildConfig) -> str | None:
    """``LICENSE.md`` of the folders with ``license: other`` and no ``license_link`` of one's own: the
    licence of each generator's images (``None`` otherwise: the Hub knows the licence by its id)."""
    pc = config.publish
    if pc.license != "other" or pc.license_link:
        return None
    from ..generate.plan import resolve_generators
    from ..generate.presets import PRESETS

    lines = [
        "# Licence",
        "",
        "The images of this dataset were generated by the models below and inherit their licences; the",
        "prompts keep the terms of their sources (see the dataset card). Check them before any use.",
        "",
        "| generator | model | licence |",
        "|---|---|---|",
    ]
    for s in resolve_generators(config.generate):
        licence = PRESETS[s.preset].licence if s.preset in PRESETS else "see the model card"
        lines.append(f"| {s.name} | `{public_model_id(s.model_id)}` | {licence} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- card
def size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < limit:
            return name
    return "10M<n<100M"


def arrow_num_bytes(paths: Iterable[Path], feats: Any) -> int:
    """A split's ``num_bytes`` as ``datasets`` computes it when it prepares the split: the Parquet builder
    reads each file in batches of its first row group's size, casts each batch to the features' schema,
    and the Arrow writer adds up ``Table.nbytes`` of what it writes. The same steps here, so the card's
    sizes are the ones ``load_dataset`` records (the uncompressed sizes in Parquet footers are not)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from datasets.table import table_cast

    schema = feats.arrow_schema
    fmt = ds.ParquetFileFormat()
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            fragment = fmt.make_fragment(f)
            if not fragment.row_groups:
                continue
            batch_size = fragment.row_groups[0].num_rows
            if batch_size == 0:
                continue
            for batch in fragment.to_batches(batch_size=batch_size, batch_readahead=0, fragment_readahead=0):
                total += table_cast(pa.Table.from_batches([batch]), schema).combine_chunks().nbytes
    return total


def pretty_name(config: BuildConfig) -> str:
    """``publish.pretty_name``, or a fixed title: never the run directory's name (the card is a function of
    the build's inputs, not of where it was written)."""
    return config.publish.pretty_name or "visionprefer preference dataset"


ANNOTATIONS_CREATORS = ["machine-generated"]


def source_datasets(config: BuildConfig) -> list[str]:
    """The card's ``source_datasets``: ``original`` (the images and feedback are new), and each Hub
    dataset the prompts came from as ``extended|<id>`` (local files and benchmarks are named in the card)."""
    out = ["original"]
    for src in config.prompts.sources:
        if src.hf_dataset and not Path(src.hf_dataset).expanduser().is_absolute():
            hub_id = src.hf_dataset
            if hub_id.count("/") == 1 and not Path(config.base_dir, hub_id).exists():
                out.append(f"extended|{hub_id}")
    return sorted(set(out), key=out.index)


def _licence_fields(config: BuildConfig) -> dict[str, Any]:
    pc = config.publish
    if pc.license != "other":
        return {}
    return {
        "license_name": pc.license_name or "generator-licenses",
        "license_link": pc.license_link or LICENSE_FILE,
    }


def _card_header(config: BuildConfig, counts: dict[str, int], *, companion: bool) -> Any:
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        license=config.publish.license,
        **_licence_fields(config),
        pretty_name=pretty_name(config) + (" (DPO export)" if companion else ""),
        annotations_creators=ANNOTATIONS_CREATORS,
        language_creators=["machine-generated" if config.prompts.polish.enabled else "found"],
        source_datasets=source_datasets(config),
        task_categories=["text-to-image"],
        language=["en"],
        multilinguality=["monolingual"],
        size_categories=[size_category(counts["dpo"] if companion else counts["images"])],
        tags=["preference", "ai-feedback", "dpo", "visionprefer", "synthetic"]
        + (["pick-a-pic"] if companion else []),
    )


def card_data(
    config: BuildConfig,
    counts: dict[str, int],
    folder: Path | None = None,
    *,
    companion: bool = False,
    split_counts: dict[str, dict[str, int]] | None = None,
) -> Any:
    """The card's YAML header as a ``huggingface_hub.DatasetCardData``: licence (with ``license_name`` and
    ``license_link`` for ``other``), annotation and language creators, source datasets, task, size, the
    configs (in :func:`~visionprefer.publish.schema.config_names` order, ``images`` the default) with one
    ``data_files`` entry per split, and each config's ``dataset_info``, written by ``datasets``' own
    ``DatasetInfosDict`` from the column table's features. With ``companion``, the header of the DPO
    repository: one config, ``default``, the DPO export with its five splits.

    With ``folder`` (the written dataset), each ``dataset_info`` also records its split sizes as
    ``datasets`` computes them (:func:`arrow_num_bytes`; ``download_size`` the files' bytes): besides
    informing the viewer, that makes two builds' cards differ, and ``load_dataset``'s cache for a local
    folder is keyed on the card's metadata, not on the folder (two folders with identical cards would be
    served one cache)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    data = _card_header(config, counts, companion=companion)
    if companion:
        entries = [("default", "dpo", lambda split: companion_paths(split))]
    else:
        entries = [
            (name, name, lambda split, name=name: config_paths(name, split)) for name in config_names(config)
        ]

    def splits_of(name: str) -> tuple[str, ...]:
        if split_counts is None:
            return split_names(name)
        return present_splits(name, split_counts[name])

    data["configs"] = [
        {
            "config_name": config_name,
            "data_files": [{"split": split, "path": paths(split)} for split in splits_of(name)],
            **({"default": True} if name == "images" or companion else {}),
        }
        for config_name, name, paths in entries
    ]
    infos = DatasetInfosDict()
    for config_name, name, paths in entries:
        info = DatasetInfo(features=features(name), config_name=config_name)
        if folder is not None:
            splits, download = SplitDict(), 0
            for split in splits_of(name):
                files = sorted(folder.glob(paths(split)))
                n = split_counts[name][split] if split_counts else None
                if n is None:
                    import pyarrow.parquet as pq

                    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
                splits.add(
                    SplitInfo(name=split, num_bytes=arrow_num_bytes(files, info.features), num_examples=n)
                )
                download += sum(f.stat().st_size for f in files)
            info.splits = splits
            info.download_size = download
            info.dataset_size = sum(s.num_bytes for s in splits.values())
        infos[config_name] = info
    infos.to_dataset_card_data(data)
    order = [c["config_name"] for c in data["configs"]]
    entries_yaml = data["dataset_info"] if isinstance(data["dataset_info"], list) else [data["dataset_info"]]
    if isinstance(data["dataset_info"], list):
        data["dataset_info"].sort(key=lambda entry: order.index(entry["config_name"]))  # as `configs`
    for entry in entries_yaml:  # without sizes: no `splits: null` and the like
        for key in [k for k, v in entry.items() if v is None]:
            del entry[key]
    return data


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _numbers_first(value: Any) -> tuple[Any, ...]:
    """Sort key: numbers by value (so a guidance scale of 10 comes after 3), then anything else as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def score_stats(summary: FeedbackSummary, key: str) -> list[list[Any]]:
    """Count and mean ``overall`` (and mean of each aspect) of the annotated images per value of ``key``
    (``generator_name``, ``guidance_scale``), from the feedback's :class:`~.data.FeedbackSummary`."""
    rows = []
    counts, values = summary.counts[key], summary.values[key]
    for value in sorted(counts, key=_numbers_first):
        row = [value, counts[value], _fmt(mean(values["overall"][value]))]
        for aspect in ASPECTS:
            scores = values[aspect].get(value)
            row.append(_fmt(mean(scores)) if scores else "–")
        rows.append(row)
    return rows


CARD_TEMPLATE = "DATASET_CARD.md"
"""The card's Jinja2 template: ``DATASET_CARD.md`` at the repository's top level (in a wheel,
``visionprefer/_data/DATASET_CARD.md``; see :func:`visionprefer.resources.data_path`)."""


def render_card(
    config: BuildConfig,
    run: RunDir,
    data: dict[str, Any],
    counts: dict[str, int],
    repo_id: str | None = None,
    *,
    status: dict[str, Any],
    companion: bool = False,
) -> str:
    """The dataset card: the YAML of :func:`card_data` and the body rendered from the packaged template
    with :func:`card_context`, read back through ``huggingface_hub.DatasetCard``. ``status`` is
    :func:`visionprefer.stages.run_status` of the run. With ``companion``, the card
    of the DPO repository (``<publish.folder>-dpo``)."""
    from huggingface_hub import DatasetCard

    folder = dpo_repo_dir(config, run) if companion else dataset_dir(config, run)
    meta = card_data(config, counts, folder, companion=companion, split_counts=data.get("split_counts"))
    text = card_template().render(
        card_data=meta.to_yaml(),
        companion=companion,
        **card_context(config, data, counts, repo_id=repo_id, status=status),
    )
    return DatasetCard(text).content


def card_template() -> Any:
    """The card's ``jinja2.Template``: undefined values are errors, block tags leave no blank lines."""
    import jinja2

    from ..resources import data_path

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["cell"] = lambda v: "" if v is None else str(v)
    env.filters["fmt"] = format
    env.filters["json"] = json.dumps
    source = data_path(CARD_TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(source)


def card_context(
    config: BuildConfig,
    data: dict[str, Any],
    counts: dict[str, int],
    *,
    repo_id: str | None,
    status: dict[str, Any],
) -> dict[str, Any]:
    """The values the card's template renders: the config itself, and what is computed from the run (tables
    as lists of rows). Nothing here depends on where the run was written."""
    from .. import __version__
    from ..generate.plan import resolve_generators
    from ..generate.presets import PRESETS

    images, pairs = data["images"], data["pairs"]
    summary = feedback_summary(data)
    split_counts = data.get("split_counts", {})
    specs = resolve_generators(config.generate)
    by_gen = Counter(r["generator_name"] for r in images)
    ann = config.annotate
    generators = [
        [
            s.name,
            f"`{public_model_id(s.model_id)}`",
            f"`{s.revision}`" if s.revision else "–",
            s.steps,
            f"{s.width}×{s.height}" if s.width else "model default",
            ", ".join(f"{g:g}" for g in sorted(set(s.guidance_scales))),
            by_gen.get(s.name, 0),
            PRESETS[s.preset].licence if s.preset in PRESETS else "see the model card",
        ]
        for s in specs
    ]
    sources = [
        {
            "name": src.source_name,
            "where": f"Hugging Face dataset `{src.hf_dataset}`"
            if src.hf_dataset
            else f"file `{Path(src.path or '').name}`",
            "column": src.column,
        }
        for src in config.prompts.sources
    ]
    judge: dict[str, Any] = {
        "judge_model": None,
        "guide_version": None,
        "order_effects": None,
        # the calibration gate's record, of either backend (the card's "Label quality")
        "calibration": status.get("stages", {}).get("annotate", {}).get("calibration"),
    }
    if ann.backend == "judge":
        from ..annotate.judge import judge_name, load_guide

        judge.update(
            judge_model=judge_name(ann.judge),
            guide_version=load_guide(ann.judge)[1],
            order_effects=status.get("stages", {}).get("annotate", {}).get("order_effects"),
        )
    # What reads every pair is computed once for the two cards (the main folder's and the companion's).
    cache = data.get("_card_cache")
    if cache is None or cache[0] is not pairs:
        tables = score_tables(config, summary, pairs) if summary else []
        cache = data["_card_cache"] = (pairs, sum(1 for p in pairs if p["label_0"] == 0.5), tables)
    ties = cache[1]
    st = status["stages"]
    stage_counts = [
        [
            "prompts",
            st["prompts"]["done"],
            st["prompts"]["failed"],
            f"{st['prompts'].get('filtered', 0)} filtered",
        ],
        [
            "generate",
            st["generate"]["done"],
            st["generate"]["failed"],
            f"{st['generate'].get('planned')} planned",
        ],
        ["annotate", st["annotate"]["done"], st["annotate"]["failed"], ann.backend],
        ["pairs", st["pairs"].get("pairs", 0), 0, f"{ties} ties"],
    ]
    return {
        "config": config,
        "ann": ann,
        "pc": config.prompts,
        "pretty_name": pretty_name(config),
        "counts": counts,
        "version": __version__,
        "fingerprint": config.portable_fingerprint(),
        "tiny": any(s.tiny for s in specs),
        "repo_id": repo_id or "ORG/NAME",
        "dpo_repo_id": (repo_id or "ORG/NAME") + DPO_REPO_SUFFIX,
        "config_names": config_names(config),
        "present": {n: list(present_splits(n, split_counts.get(n, {}))) for n in config_names(config)},
        "sizes": [
            [n, *(split_counts.get(n, {}).get(s, "–") for s in SPLITS), f"`{config_dir(n)}/`"]
            for n in config_names(config)
        ],
        "dpo_sizes": [
            [s, split_counts.get("dpo", {}).get(s, 0), f"`{companion_paths(s)}`"] for s in split_names("dpo")
        ],
        "split_fractions": {
            "validation": config.publish.validation_fraction,
            "test": config.publish.test_fraction,
        },
        "sources": sources,
        "generators": generators,
        **judge,
        "pairs": len(pairs),
        "ties": ties,
        "columns": {name: column_rows(name, config) for name in config_names(config)},
        "stage_counts": stage_counts,
        "score_tables": cache[2],
        "llm_spend": [
            [k, v["completions"], v["errors"], v["input_tokens"], v["output_tokens"], f"{v['usd']:.4f}"]
            for k, v in (status.get("llm") or {}).items()
        ],
    }


def column_rows(config_name: str, config: BuildConfig) -> list[list[str]]:
    """The card's column table of one config, from the column table of :mod:`.schema`: name, type,
    description and the condition without which the column is null ("null here" when it is in this build)."""
    rows = []
    for col in columns(config_name):
        only_with = CONDITIONS[col.only_with].label if col.only_with else ""
        if only_with and not col.filled(config):
            only_with += " (null here)"
        rows.append([f"`{col.name}`", col.type_label(), col.description, only_with])
    return rows


def score_tables(
    config: BuildConfig, summary: FeedbackSummary, pairs: Sequence[dict[str, Any]]
) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The card's statistics tables after the counts, as ``(title, header, rows)``: scores per generator
    and per guidance scale, win rates with their intervals, and the judge's score distribution (from the
    feedback's :class:`~.data.FeedbackSummary`)."""
    ann = config.annotate
    head = ["images", "mean overall", *ASPECTS]
    tables = [
        ("Scores per generator", ["generator", *head], score_stats(summary, "generator_name")),
        (
            "Scores per guidance scale",
            ["guidance scale", *head],
            score_stats(summary, "guidance_scale"),
        ),
    ]
    if pairs:
        from .report import format_ci, win_rates

        overall = select(pairs, lambda p: p["aspect"] == "overall")
        for title, side in (("generator", "generator"), ("guidance scale", "guidance_scale")):
            rates = win_rates(overall, lambda p, i, side=side: p[f"{side}_{i}"])
            if rates:
                tables.append(
                    (
                        f"Win rate per {title} (`overall` pairs whose two images differ in it; (W + 0.5·T) / N "
                        "with its 95% paired-bootstrap interval)",
                        [title, "W", "T", "L", "N", "win rate", "95% CI"],
                        [
                            [
                                g if isinstance(g, str) else f"{g:g}",
                                r["wins"],
                                r["ties"],
                                r["losses"],
                                r["n"],
                                f"{r['win_rate']:.3f}",
                                format_ci(r["ci"]),
                            ]
                            for g, r in sorted(rates.items(), key=lambda item: _numbers_first(item[0]))
                        ],
                    )
                )
    if ann.backend == "judge":
        scale = range(ann.judge.score_min, ann.judge.score_max + 1)
        dist = []
        for aspect in ASPECTS:
            c = summary.distribution[aspect]
            dist.append([aspect, *[c.get(v, 0) for v in scale]])
        tables.append(("Score distribution (images per rounded score)", ["aspect", *map(str, scale)], dist))
    return tables
