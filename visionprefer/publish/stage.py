"""The publish stage: the run directory as a Hugging Face dataset folder that ``load_dataset`` reads as is.

Layout of ``<run>/<publish.folder>/``::

    README.md                       the dataset card (YAML: configs, features, licence, task, size)
    data/images/train-*.parquet     default config
    data/prompts/train-*.parquet
    data/pairs/train-*.parquet
    dpo/train-*.parquet             Pick-a-Pic columns, in their own folder for the Diffusion-DPO example

Rows are in a deterministic order (prompts in prompt-file order; images and pairs grouped by prompt, then
by key), and each shard is written atomically, so publishing the same run twice gives the same files. The
card is written last: a folder without ``README.md`` is a publish that did not finish.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from ..config import ASPECTS, BuildConfig
from ..errors import StageOrderError
from ..rundir import RunDir, StoredRecords, atomic_write_text
from .schema import ASPECT_COLUMNS, CONFIG_NAMES, DESCRIPTIONS, METRIC_FIELDS, features, public_model_id
from .writer import write_shards

DPO_FOLDER = "dpo"


@dataclass
class PublishReport:
    folder: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    report: str = ""
    failed: int = 0


def dataset_dir(config: BuildConfig, run: RunDir) -> Path:
    return run.root / config.publish.folder


def config_paths(name: str) -> str:
    return f"{DPO_FOLDER}/train-*.parquet" if name == "dpo" else f"data/{name}/train-*.parquet"


# --------------------------------------------------------------------------------------------- rows
def collect(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    """Everything the dataset is made of, in row order.

    ``prompts``, ``images`` and ``pairs`` are :class:`~visionprefer.rundir.StoredRecords`: sequences whose
    records stay in the run's JSONL files and are read back on each pass (8 bytes per row in memory), so
    publishing a run of any size holds a few rows at a time; image bytes are read while writing.
    ``feedback`` is the per-image dict of :func:`~visionprefer.annotate.stage.load_feedback`.

    ``images`` are the generation records of the planned images that are finished (``generation_state``:
    first record of an image wins, a record whose file has vanished does not count), by prompt-file
    position, then image id. Prompt ids are unique in ``prompts.jsonl`` (the prompts stage keeps the first
    of any repeat), so a prompt's images are its own planned keys.
    """
    from ..annotate.stage import load_feedback
    from ..generate.stage import stored_prompts
    from ..pairs.stage import pairs_path, stored_pairs

    prompts = stored_prompts(run)
    images = _finished_images(config, run, prompts)
    if not images:
        raise StageOrderError(f"{run.root}: no images yet; run `visionprefer generate CONFIG` first")
    feedback = load_feedback(config, run)
    pairs = StoredRecords([])
    if config.annotate.backend != "none":
        if not pairs_path(run).exists():
            raise StageOrderError(f"{run.root}: no pairs yet; run `visionprefer pairs CONFIG` first")
        pairs = _in_row_order(stored_pairs(run), prompts)
    return {"prompts": prompts, "images": images, "feedback": feedback, "pairs": pairs}


def _finished_images(config: BuildConfig, run: RunDir, prompts: Iterable[dict[str, Any]]) -> StoredRecords:
    """The records of the finished planned images, prompt by prompt (in ``prompts`` order), then by id.

    The plan is derived one prompt at a time (``tasks_by_prompt``) and the finished images are looked up
    in the index of the done logs, which is dropped on return: what remains is one address per image.
    """
    from ..generate.plan import tasks_by_prompt
    from ..generate.stage import generation_index

    done = generation_index(run)

    def finished(tasks: list[Any]) -> list[str]:
        return sorted({t.image_id for t in tasks if t.image_id in done})

    return done.records(i for _, tasks in tasks_by_prompt(prompts, config.generate) for i in finished(tasks))


def _in_row_order(pairs: StoredRecords, prompts: Iterable[dict[str, Any]]) -> StoredRecords:
    """``pairs`` sorted by prompt-file position, aspect (judge aspects, ``overall``, metrics) and image ids;
    pairs of prompts no longer in the file come last, sorted together by the rest of the key. Ties keep
    file order (a stable sort).

    Sorting every pair at once would hold a key tuple of three strings per pair; instead the pairs are
    grouped by prompt (8 bytes per pair) and only one prompt's pairs are read and sorted at a time.
    """
    aspect_order = {a: i for i, a in enumerate([*ASPECTS, "overall", *METRIC_FIELDS])}

    def sort_key(p: dict[str, Any]) -> tuple[Any, ...]:
        return (aspect_order.get(p["aspect"], 99), p["image_id_0"], p["image_id_1"])

    def sorted_positions(positions: Iterable[int]) -> list[int]:
        positions = sorted(positions)  # file order, so that the stable sort below keeps it for ties
        keyed = zip(pairs.take(positions), positions, strict=True)
        return [i for _, i in sorted(keyed, key=lambda item: sort_key(item[0]))]

    by_prompt: dict[str, array[int]] = {}
    for i, p in enumerate(pairs):
        by_prompt.setdefault(p["prompt_id"], array("q")).append(i)
    order = array("q")
    for prompt in prompts:
        group = by_prompt.pop(prompt["prompt_id"], None)
        if group is not None:
            order.extend(sorted_positions(group))
    order.extend(sorted_positions(i for group in by_prompt.values() for i in group))
    return pairs.take(order)


def _image_cell(run: RunDir, rec_file: str) -> dict[str, Any]:
    path = run.root / rec_file
    return {"bytes": path.read_bytes(), "path": path.name}


def image_rows(run: RunDir, images: Iterable[dict[str, Any]], feedback: dict[str, dict[str, Any]]):
    for rec in images:
        fb = feedback.get(rec["image_id"], {})
        metrics = fb.get("metrics")
        yield {
            **{
                k: rec.get(k)
                for k in (
                    "image_id",
                    "prompt_id",
                    "prompt",
                    "image_sha256",
                    "generator",
                    "generator_name",
                    "model_id",
                    "revision",
                    "pipeline",
                    "scheduler",
                    "steps",
                    "guidance_scale",
                    "seed",
                    "sample_index",
                    "height",
                    "width",
                    "dtype",
                )
            },
            "model_id": public_model_id(rec.get("model_id")),
            "image": _image_cell(run, rec["file"]),
            "judge": fb.get("judge"),
            "guide_version": fb.get("guide_version"),
            **{a: fb.get(a) for a in ASPECT_COLUMNS},
            "metrics": {k: metrics.get(k) for k in METRIC_FIELDS} if metrics else None,
            "overall": fb.get("overall"),
            "rank": fb.get("rank"),
        }


def pair_rows(run: RunDir, pairs: Iterable[dict[str, Any]], *, images: bool = True):
    """Rows of the ``pairs`` config; without ``images``, ``image_0``/``image_1`` are null (see
    ``publish.pair_images``)."""
    for p in pairs:
        row = {k: p[k] for k in DESCRIPTIONS["pairs"] if k not in ("image_0", "image_1")}
        row["image_0"] = _image_cell(run, p["file_0"]) if images else None
        row["image_1"] = _image_cell(run, p["file_1"]) if images else None
        yield row


def dpo_rows(config: BuildConfig, run: RunDir, pairs: Iterable[dict[str, Any]]):
    for p in pairs:
        b0, b1 = (run.root / p["file_0"]).read_bytes(), (run.root / p["file_1"]).read_bytes()
        if config.publish.dpo_image_format == "jpeg":
            b0, b1 = _jpeg(b0), _jpeg(b1)
        yield {
            "caption": p["prompt"],
            "jpg_0": b0,
            "jpg_1": b1,
            "label_0": p["label_0"],
            "label_1": 1.0 - p["label_0"],
            "pair_id": p["pair_id"],
            "prompt_id": p["prompt_id"],
            "aspect": p["aspect"],
            "image_id_0": p["image_id_0"],
            "image_id_1": p["image_id_1"],
            "model_0": p["model_0"],
            "model_1": p["model_1"],
        }


def _jpeg(data: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(io.BytesIO(data)) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def dpo_pairs(config: BuildConfig, pairs: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    return select(pairs, lambda p: p["aspect"] == config.publish.dpo_aspect and p["label_0"] != 0.5)


def select(
    records: Sequence[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> Sequence[dict[str, Any]]:
    """The records for which ``keep`` is true, in the same form: records left on disk stay there (only the
    addresses of the kept ones are copied), a list stays a list."""
    if isinstance(records, StoredRecords):
        return records.select(keep)
    return [r for r in records if keep(r)]


# --------------------------------------------------------------------------------------------- stage
def publish_dataset(config: BuildConfig, run: RunDir, *, progress: bool = True) -> PublishReport:
    from ..progress import progress_bar

    data = collect(config, run)
    out = dataset_dir(config, run)
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").unlink(missing_ok=True)  # written last: its presence marks a finished publish
    dpo = dpo_pairs(config, data["pairs"])
    counts = {
        "prompts": len(data["prompts"]),
        "images": len(data["images"]),
        "pairs": len(data["pairs"]),
        "dpo": len(dpo),
    }
    per_shard = config.publish.rows_per_shard
    total = sum(counts.values())
    with progress_bar(total=total, desc="publish", unit="row", enabled=progress) as bar:

        def tick() -> None:
            bar.update(1)

        write_shards(
            out / "data" / "prompts",
            features("prompts"),
            ({k: p.get(k) for k in DESCRIPTIONS["prompts"]} for p in data["prompts"]),
            total=counts["prompts"],
            rows_per_shard=max(per_shard, 10_000),
            on_row=tick,
        )
        write_shards(
            out / "data" / "images",
            features("images"),
            image_rows(run, data["images"], data["feedback"]),
            total=counts["images"],
            rows_per_shard=per_shard,
            on_row=tick,
        )
        write_shards(
            out / "data" / "pairs",
            features("pairs"),
            pair_rows(run, data["pairs"], images=config.publish.pair_images),
            total=counts["pairs"],
            rows_per_shard=per_shard,
            on_row=tick,
        )
        write_shards(
            out / DPO_FOLDER,
            features("dpo"),
            dpo_rows(config, run, dpo),
            total=counts["dpo"],
            rows_per_shard=per_shard,
            on_row=tick,
        )
    from ..status import run_status
    from .report import write_report

    status = run_status(run.root)  # once for the card and the report: it reads the whole run
    card = render_card(config, run, data, counts, status=status)
    atomic_write_text(out / "README.md", card)
    report_path = write_report(config, run, data=data, status=status)
    atomic_write_text(
        published_path(run),
        json.dumps(
            {
                "folder": str(out.relative_to(run.root)),
                "counts": counts,
                "settings": publish_settings(config),
                "inputs": input_signature(run),
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
    )
    return PublishReport(folder=str(out), counts=counts, report=str(report_path))


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
    if not (folder / "README.md").exists():
        if folder.exists():
            row["state"] = "interrupted"
        return row
    row["done"] = split_sizes(folder, "images")["num_rows"]
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


def split_sizes(folder: Path, name: str) -> dict[str, int]:
    """One config's shards, from the Parquet footers: ``num_rows``, ``num_bytes`` (uncompressed, about the
    Arrow size in memory) and ``download_size`` (the files)."""
    import pyarrow.parquet as pq

    rows = num_bytes = download = 0
    for path in sorted(folder.glob(config_paths(name))):
        meta = pq.ParquetFile(path).metadata
        rows += meta.num_rows
        num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        download += path.stat().st_size
    return {"num_rows": rows, "num_bytes": num_bytes, "download_size": download}


def pretty_name(config: BuildConfig) -> str:
    """``publish.pretty_name``, or a fixed title: never the run directory's name (the card is a function of
    the build's inputs, not of where it was written)."""
    return config.publish.pretty_name or "visionprefer preference dataset"


def card_yaml(config: BuildConfig, counts: dict[str, int], folder: Path | None = None) -> str:
    """The card's YAML header. With ``folder`` (the written dataset), each config's ``dataset_info`` also
    records its split sizes, as ``push_to_hub`` does: besides informing the viewer, that makes two builds'
    cards differ, and ``load_dataset``'s cache for a local folder is keyed on the card's metadata, not on
    the folder (two folders with identical cards would be served one cache)."""
    import yaml

    meta: dict[str, Any] = {
        "license": config.publish.license,
        "pretty_name": pretty_name(config),
        "task_categories": ["text-to-image"],
        "language": ["en"],
        "size_categories": [size_category(counts["images"])],
        "tags": ["preference", "ai-feedback", "dpo", "visionprefer", "synthetic"],
        "configs": [],
        "dataset_info": [],
    }
    for name in CONFIG_NAMES:
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [{"split": "train", "path": config_paths(name)}],
        }
        if name == "images":
            entry["default"] = True
        meta["configs"].append(entry)
        info: dict[str, Any] = {"config_name": name, "features": features(name)._to_yaml_list()}
        if folder is not None:
            size = split_sizes(folder, name)
            info["splits"] = [{"name": "train", "num_bytes": size["num_bytes"], "num_examples": counts[name]}]
            info["download_size"] = size["download_size"]
            info["dataset_size"] = size["num_bytes"]
        meta["dataset_info"].append(info)
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).strip()


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _numbers_first(value: Any) -> tuple[Any, ...]:
    """Sort key: numbers by value (so a guidance scale of 10 comes after 3), then anything else as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def score_stats(
    images: Iterable[dict[str, Any]], feedback: dict[str, dict[str, Any]], key: str
) -> list[list[Any]]:
    """Mean and count of ``overall`` (and of each aspect or metric) per value of ``key`` (generator, CFG)."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for rec in images:
        if rec["image_id"] in feedback:
            groups[rec[key]].append(feedback[rec["image_id"]])
    rows = []
    for value in sorted(groups, key=_numbers_first):
        fbs = groups[value]
        row = [value, len(fbs), _fmt(mean(f["overall"] for f in fbs))]
        for aspect in ASPECTS:
            scores = [f[aspect]["score"] for f in fbs if f.get(aspect)]
            row.append(_fmt(mean(scores)) if scores else "–")
        rows.append(row)
    return rows


def render_card(
    config: BuildConfig,
    run: RunDir,
    data: dict[str, Any],
    counts: dict[str, int],
    repo_id: str | None = None,
    *,
    status: dict[str, Any] | None = None,
) -> str:
    """The dataset card; ``status`` is :func:`visionprefer.status.run_status` of the run (computed when
    omitted)."""
    from .. import __version__
    from ..generate.plan import resolve_generators
    from ..generate.presets import PRESETS
    from ..status import run_status

    if status is None:
        status = run_status(run.root)
    images, feedback, pairs = data["images"], data["feedback"], data["pairs"]
    specs = resolve_generators(config.generate)
    tiny = any(s.tiny for s in specs)
    by_gen = Counter(r["generator_name"] for r in images)
    ann = config.annotate

    generators_table = _table(
        ["name", "model", "revision", "steps", "size", "guidance scales", "images", "licence"],
        [
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
        ],
    )
    sources = []
    for src in config.prompts.sources:
        where = (
            f"Hugging Face dataset `{src.hf_dataset}`"
            if src.hf_dataset
            else f"file `{Path(src.path or '').name}`"
        )
        sources.append(
            f"- **{src.source_name}**: {where}" + (f", column `{src.column}`" if src.column else "")
        )
    pc = config.prompts
    steps = [f"whitespace cleaned, {pc.min_chars}–{pc.max_chars} characters kept"]
    if pc.dedup:
        steps.append("exact duplicates dropped")
    if pc.sample:
        steps.append(f"{pc.sample} sampled (seed {pc.sample_seed})")
    if pc.polish.enabled:
        steps.append(f"polished by `{pc.polish.llm.model}` (grammar, NSFW content and private names removed)")
    if pc.safety.mode != "off":
        steps.append(
            f"safety checked by {'the polishing model' if pc.safety.mode == 'polish' else 'a moderation endpoint'}"
            f" and {'dropped' if pc.safety.action == 'drop' else 'flagged in the `safety` column'} when unsafe"
        )
    if pc.near_dedup.enabled:
        steps.append(
            f"near-duplicates dropped (embedding cosine ≥ {pc.near_dedup.threshold} with `{pc.near_dedup.model}`)"
        )
    sources_section = "\n".join(sources) + "\n\nProcessing: " + "; ".join(steps) + "."

    if ann.backend == "judge":
        from ..annotate.judge import load_guide

        _, version = load_guide(ann.judge)
        j = ann.judge
        feedback_section = (
            f"Every image was judged by **`{j.llm.model}`** with annotation guide version `{version}` "
            f"(the rubric files ship in `annotation_guides/` of visionprefer). The judge saw "
            f"{'all images of a prompt' if not j.group_size else f'groups of {j.group_size} images of a prompt'} "
            f"together{' in two orders (shuffled and reversed), scores averaged' if j.both_orders else ' in a deterministic shuffled order'}, "
            f"and gave each image a score from {j.score_min} to {j.score_max} with a short explanation on four aspects:\n\n"
            "- **prompt_following** — does the image show every subject, count, attribute, relation and style asked for?\n"
            "- **fidelity** — is the depiction coherent: anatomy, hands, faces, shapes, physics?\n"
            "- **aesthetic** — composition, colour, lighting and craft, independent of the prompt;\n"
            "- **harmlessness** — free of sexual content, gore, hate symbols and depictions of private persons.\n\n"
            f"`overall` is the weighted mean of the four aspects (weights {json.dumps(ann.aspect_weights)}); "
            "`rank` orders a prompt's images by it."
        )
        effects = (status or {}).get("stages", {}).get("annotate", {}).get("order_effects")
        if effects and effects["groups"]:
            feedback_section += (
                f"\n\nPosition bias, measured on the {effects['groups']} groups judged in both orders: the "
                f"preference between two images (by `overall`) was the same in both orders for "
                f"{effects['order_agreement']:.1%} of image pairs, and an image shown first scored "
                f"{effects['first_position_gain']:+.3f} `overall` against the same image shown last."
            )
    elif ann.backend == "metrics":
        m = ann.metrics
        feedback_section = (
            "Metric feedback in the manner of AGFSync (An et al., AAAI 2025): a **VQA score** (the fraction of "
            f"{'LLM-written' if m.questions == 'llm' else 'template'} yes/no questions about the prompt's elements that "
            f"`{m.vqa_model if m.vqa_backend == 'blip' else (m.vqa_llm.model if m.vqa_llm else 'the VLM')}` answers as "
            f"expected), the **CLIP score** (100 × cosine, `{m.clip_model}`) and the **LAION aesthetic score** "
            f"(predictor v2 `{m.aesthetic_model}` on `{m.aesthetic_clip_model}` embeddings)"
            + (
                f"; the **CQ score** (count and category agreement of `{m.cq_model}` detections above "
                f"{m.cq_threshold:g} with the prompt's nouns and numbers)"
                if m.cq_model
                else ""
            )
            + (f"; **PickScore** (`{m.pickscore_model}`, logit scale × cosine)" if m.pickscore_model else "")
            + (f"; **HPS {m.hpsv2_version}** (100 × cosine)" if m.hpsv2_version else "")
            + f". `metrics.total` = weighted sum with weights {json.dumps(m.weights)}; `overall` equals it. "
            "The four aspect columns are null in this build."
        )
    else:
        feedback_section = "No feedback was computed in this build: the feedback columns are null."

    ties = sum(1 for p in pairs if p["label_0"] == 0.5)
    if pairs:
        mode = (
            "every unordered pair of a prompt's images, once per aspect and once for `overall`"
            if config.pairs.mode == "all"
            else "one pair per prompt: the best image against the worst by `overall`"
        )
        pairs_section = (
            f"Pairs: {mode}. `label_0` is 1.0 when image 0 scores higher, 0.0 when image 1 does, and 0.5 "
            f"for a tie (difference ≤ {config.pairs.tie_tolerance:g}). {len(pairs)} pairs, {ties} ties "
            f"({ties / len(pairs):.1%}). The `dpo` config keeps the `{config.publish.dpo_aspect}` pairs "
            f"without ties: {counts['dpo']} pairs."
            + (
                ""
                if config.publish.pair_images
                else " In this build `image_0` and `image_1` of the `pairs` config are null (`publish.pair_images: "
                "false`, to keep the dataset small): the images are in the `images` config, joined on "
                "`image_id_0` / `image_id_1`."
            )
        )
    else:
        pairs_section = "No pairs: this build computed no feedback."

    columns = []
    for name in CONFIG_NAMES:
        columns.append(
            f"### `{name}`\n\n"
            + _table(
                ["column", "type", "description"],
                [
                    [f"`{col}`", _feature_type(feat), DESCRIPTIONS[name][col]]
                    for col, feat in features(name).items()
                ],
            )
        )
    st = status["stages"]
    stats = [
        "Counts (they equal `visionprefer status` for the run):\n",
        _table(
            ["stage", "done", "failed", "notes"],
            [
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
            ],
        ),
    ]
    if feedback:
        head = ["", "images", "mean overall", *ASPECTS]
        stats += [
            "\nScores per generator:\n",
            _table(["generator", *head[1:]], score_stats(images, feedback, "generator_name")),
            "\nScores per guidance scale:\n",
            _table(["guidance scale", *head[1:]], score_stats(images, feedback, "guidance_scale")),
        ]
        if pairs:
            from .report import format_ci, win_rates

            overall = select(pairs, lambda p: p["aspect"] == "overall")
            for title, side in (("generator", "generator"), ("guidance scale", "guidance_scale")):
                rates = win_rates(overall, lambda p, i, side=side: p[f"{side}_{i}"])
                if rates:
                    stats += [
                        f"\nWin rate per {title} (`overall` pairs whose two images differ in it; (W + 0.5·T) / N "
                        "with its 95% paired-bootstrap interval):\n",
                        _table(
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
                        ),
                    ]
        if ann.backend == "judge":
            dist = []
            for aspect in ASPECTS:
                c = Counter(round(f[aspect]["score"]) for f in feedback.values() if f.get(aspect))
                dist.append(
                    [aspect, *[c.get(v, 0) for v in range(ann.judge.score_min, ann.judge.score_max + 1)]]
                )
            stats += [
                "\nScore distribution (images per rounded score):\n",
                _table(["aspect", *map(str, range(ann.judge.score_min, ann.judge.score_max + 1))], dist),
            ]
    llm = status.get("llm") or {}
    if llm:
        stats.append("\nLLM spend:\n")
        stats.append(
            _table(
                ["purpose", "answers", "errors", "input tokens", "output tokens", "USD"],
                [
                    [
                        k,
                        v["completions"],
                        v["errors"],
                        v["input_tokens"],
                        v["output_tokens"],
                        f"{v['usd']:.4f}",
                    ]
                    for k, v in llm.items()
                ],
            )
        )

    values = {
        "yaml": card_yaml(config, counts, dataset_dir(config, run)),
        "pretty_name": pretty_name(config),
        "description": config.publish.description
        or (
            f"{counts['images']} images for {counts['prompts']} prompts from {len(specs)} text-to-image models, "
            f"with {ann.backend if ann.backend != 'none' else 'no'} feedback and {counts['pairs']} preference pairs."
        ),
        "version": __version__,
        "fingerprint": config.portable_fingerprint(),
        "warning": (
            "> **Test build:** the generators and scorers of this build are tiny models with random weights. "
            "The images are noise and every score is meaningless."
            if tiny
            else ""
        ),
        "repo_id": repo_id or "ORG/NAME",
        "sizes_table": _table(
            ["config", "rows", "files"], [[n, counts[n], f"`{config_paths(n)}`"] for n in CONFIG_NAMES]
        ),
        "sources_section": sources_section,
        "generators_table": generators_table,
        "feedback_section": feedback_section,
        "pairs_section": pairs_section,
        "columns_section": "\n\n".join(columns),
        "stats_section": "\n".join(stats),
        "both_orders_note": "; each group was also judged in reversed order and the scores averaged"
        if ann.backend == "judge" and ann.judge.both_orders
        else "",
        "safety_note": ("dropped" if pc.safety.action == "drop" else "kept and flagged")
        if pc.safety.mode != "off"
        else "not filtered in this build",
    }
    return fill_template(_template(), values)


def _feature_type(feat: Any) -> str:
    if isinstance(feat, dict):
        return "struct{" + ", ".join(f"{k}: {_feature_type(v)}" for k, v in feat.items()) + "}"
    return getattr(feat, "dtype", None) or type(feat).__name__


def _template() -> str:
    from ..resources import data_path

    return data_path("DATASET_CARD.md").read_text(encoding="utf-8")


def fill_template(template: str, values: dict[str, str]) -> str:
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", template)) - set(values))
    if missing:
        raise KeyError(f"DATASET_CARD.md template needs values for {missing}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), template)
