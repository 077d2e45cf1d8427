"""Public human-preference test sets, read from local copies in their published formats.

Every set has a spec in ``benchmarks/specs/human/<name>.yaml`` (source, revision, hashes where they could be
verified, licence, size, loader kind, protocol, published reference figures): :func:`testset_spec`. A
loader turns the set's own file layout into one internal form, a list of :class:`Item`:

* ``item_id`` — the set's own key of the group of images judged together (a prompt for ranked sets, a
  pair for pairwise sets); scores are looked up by ``(item_id, image index)``;
* ``prompt`` and ``images`` — image references: paths resolved against the set's image folder, or the
  encoded bytes for parquet rows;
* ``ranking`` — human rank per image, **lower is better**, equal numbers are a human tie (a pairwise set
  gives ``(1, 2)``, ``(2, 1)`` or ``(1, 1)``); ``None`` for rating sets;
* ``likert`` — the human rating per image (TIFA160's ``human_avg``), ``None`` elsewhere;
* ``aspect`` — a category label where the set has one (MJ-Bench category, a visionprefer pair's aspect);
* ``image_ids`` — per-image keys where the set has them (TIFA160's image key), accepted by score files
  instead of the index.

Nothing here downloads except :func:`testset_file`, which fetches a file a spec gives a URL for (through
:func:`visionprefer.download.cached_download`, checked against the spec's sha256 when it is pinned); the
loaders read local copies. No torch, no PIL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError, SourceError

TESTSETS = (
    "imagereward_test",
    "hpdv2_test",
    "hpdv3_test",
    "pickapic_v1_test",
    "tifa160",
    "mjbench_alignment",
    "mjbench_safety",
    "mjbench_quality",
)
"""Names of the specs in ``benchmarks/specs/human/``."""

LOADERS = ("imagereward_test", "hpdv2_test", "hpdv3_test", "pickapic", "tifa160", "mjbench")
"""Loader kinds (a spec's ``loader``); ``pickapic`` also reads any table in Pick-a-Pic columns."""


@dataclass(frozen=True)
class Item:
    """One group of images judged together by humans (see the module docstring for the fields)."""

    item_id: str
    prompt: str
    images: tuple[Any, ...]
    ranking: tuple[float, ...] | None = None
    likert: tuple[float, ...] | None = None
    aspect: str | None = None
    image_ids: tuple[str, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("ranking", "likert", "image_ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise SourceError(f"item {self.item_id!r}: {len(value)} {name} entries for {n} images")


def testset_spec(name: str) -> dict[str, Any]:
    """The spec of test set ``name`` (one of :data:`TESTSETS`) as a dict."""
    import yaml

    from ...resources import data_path

    if name not in TESTSETS:
        raise ConfigError(f"test set {name!r}: unknown; choose one of {', '.join(TESTSETS)}")
    return yaml.safe_load(data_path(f"benchmarks/specs/human/{name}.yaml").read_text(encoding="utf-8"))


def testset_file(name: str, kind: str = "annotations", *, downloader: Any = None) -> Path:
    """The file ``kind`` (a key of the spec's ``files``) of test set ``name``, downloaded on first use into
    ``<cache>/testsets/<name>/`` and checked against the spec's ``sha256``; a file whose hash is not pinned
    (``verified: false``) is downloaded unchecked. ``downloader(url, dest)`` replaces the network (tests)."""
    from ...download import cache_root, cached_download

    spec = testset_spec(name)
    entry = spec["files"].get(kind)
    if entry is None:
        raise ConfigError(f"test set {name}: no file {kind!r}; its spec lists {', '.join(spec['files'])}")
    url = entry.get("url")
    if not url:
        raise ConfigError(f"test set {name}: its {kind} file has no download URL; pass a local copy")
    dest = cache_root() / "testsets" / name / (entry.get("filename") or Path(url).name)
    return cached_download(
        url, dest, sha256=entry.get("sha256"), downloader=downloader, name=f"{name} {kind}"
    )


def with_images(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Loader ``options`` for test set ``name`` when its images themselves are needed (to score or show
    them): the Pick-a-Pic loader reads the image bytes only when asked (``with_images``)."""
    out = dict(options or {})
    if testset_spec(name)["loader"] == "pickapic":
        out.setdefault("with_images", True)
    return out


def load_testset(name_or_loader: str, path: str | Path | Any, **options: Any) -> list[Item]:
    """Items of a test set from a local copy.

    ``name_or_loader`` is a spec name (:data:`TESTSETS`, its ``loader`` is used) or a loader kind
    (:data:`LOADERS`). ``path`` is what that loader reads (see each ``load_*`` function); ``options`` are
    passed on (e.g. ``images=`` folder, ``category=``).
    """
    if name_or_loader in TESTSETS:
        spec = testset_spec(name_or_loader)
        kind = spec["loader"]
        if kind == "mjbench":
            options.setdefault("subset", spec.get("split"))
        elif (
            kind == "pickapic"
            and spec.get("split")
            and "split" not in options
            and isinstance(path, (str, Path))
            and _parquet_files(Path(path), spec["split"])
        ):
            # a Hub snapshot holds every split: read the spec's; any other folder or file is read whole
            options["split"] = spec["split"]
    elif name_or_loader in LOADERS:
        kind = name_or_loader
    else:
        raise ConfigError(
            f"test set {name_or_loader!r}: unknown; choose a set ({', '.join(TESTSETS)}) "
            f"or a loader ({', '.join(LOADERS)})"
        )
    loader = {
        "imagereward_test": load_imagereward_test,
        "hpdv2_test": load_hpdv2_test,
        "hpdv3_test": load_hpdv3_test,
        "pickapic": load_pickapic,
        "tifa160": load_tifa160,
        "mjbench": load_mjbench,
    }[kind]
    return loader(path, **options)


#: ``size`` keys of a spec that count the items of its loader (a prompt, caption or pair each).
ITEM_COUNT_KEYS = ("prompts", "captions", "pairs")


def size_facts(items: Sequence[Item]) -> dict[str, Any]:
    """What a loaded copy shows of the quantities a spec's ``size`` states: items (under each of
    :data:`ITEM_COUNT_KEYS`), ``images``, ``group_sizes`` (images per item -> items), ``decisive_pairs`` and
    ``tied_pairs`` (image pairs of an item with different / equal human ranks), ``generators`` (images per
    item) and ``ratings_per_image`` (TIFA's raw ratings per image): a number when all agree, else the list
    of the numbers seen."""
    sizes = [len(i.images) for i in items]
    facts: dict[str, Any] = dict.fromkeys(ITEM_COUNT_KEYS, len(items))
    facts["images"] = sum(sizes)
    groups: dict[int, int] = {}
    for n in sizes:
        groups[n] = groups.get(n, 0) + 1
    facts["group_sizes"] = dict(sorted(groups.items()))
    ranked = [i.ranking for i in items if i.ranking is not None]
    pairs = [(r[a], r[b]) for r in ranked for a in range(len(r)) for b in range(a + 1, len(r))]
    facts["decisive_pairs"] = sum(x != y for x, y in pairs)
    facts["tied_pairs"] = sum(x == y for x, y in pairs)
    facts["generators"] = _one_or_all(sizes)
    facts["ratings_per_image"] = _one_or_all([len(r) for i in items for r in i.meta.get("human_scores", ())])
    return facts


def _one_or_all(values: Sequence[int]) -> int | list[int]:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else distinct


def size_problems(spec: Mapping[str, Any], items: Sequence[Item]) -> list[str]:
    """Every quantity of ``spec["size"]`` (numbers and ``group_sizes``; null and text entries are not
    claims) that ``items`` contradict, as one line each; empty when the copy is the one the spec describes."""
    facts = size_facts(items)
    out = []
    for key, stated in (spec.get("size") or {}).items():
        if key not in facts or stated is None or isinstance(stated, str):
            continue
        found = facts[key]
        if key == "group_sizes":
            stated = {int(k): v for k, v in stated.items()}
        if found != stated:
            out.append(f"size.{key}: the spec states {stated}, the copy has {found}")
    return out


# ---------------------------------------------------------------------------------------------------
# Ranked sets


def load_imagereward_test(path: str | Path, *, images: str | Path | None = None) -> list[Item]:
    """ImageReward's ``data/test.json``: ``[{id, prompt, generations: [path], ranking: [int]}]``.

    ``path`` is the JSON file or its folder (then ``<folder>/test.json``). Image paths are resolved
    against ``images`` (default: ``test_images/`` beside the JSON, as the repository's test.py expects).
    ``ranking`` is kept as published: 1 = best, equal values are ties, gaps allowed.
    """
    file = _file(path, "test.json")
    root = Path(images) if images is not None else file.parent / "test_images"
    items = []
    for i, row in enumerate(_read_json_list(file)):
        _require(row, ("id", "prompt", "generations", "ranking"), file, i)
        items.append(
            Item(
                item_id=str(row["id"]),
                prompt=row["prompt"],
                images=tuple(str(root / g) for g in row["generations"]),
                ranking=tuple(_number(r, file, i) for r in row["ranking"]),
            )
        )
    return items


def load_hpdv2_test(path: str | Path, *, images: str | Path | None = None) -> list[Item]:
    """HPD v2's ``test.json``: ``[{prompt, image_path: [file], rank: [int], raw_annotations}]``.

    The item id is the prompt's position in the file (the file has no id field). Images resolve against
    ``images`` (default ``test/`` beside the JSON, the README's layout). ``rank`` is lower = better.
    The annotators' raw ranks are kept in ``meta["raw_annotations"]`` when present.
    """
    file = _file(path, "test.json")
    root = Path(images) if images is not None else file.parent / "test"
    items = []
    for i, row in enumerate(_read_json_list(file)):
        _require(row, ("prompt", "image_path", "rank"), file, i)
        meta = {"raw_annotations": row["raw_annotations"]} if "raw_annotations" in row else {}
        items.append(
            Item(
                item_id=str(i),
                prompt=row["prompt"],
                images=tuple(str(root / p) for p in row["image_path"]),
                ranking=tuple(_number(r, file, i) for r in row["rank"]),
                meta=meta,
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------
# Pairwise sets


def load_hpdv3_test(path: str | Path, *, images: str | Path | None = None) -> list[Item]:
    """HPD v3's pairwise test file: ``[{prompt, path1, path2, ...}]`` (JSON array or JSONL); ``path1`` is
    the preferred image. Item id = position in the file; image 0 = path1, image 1 = path2, so the ranking
    is always ``(1, 2)``. Paths resolve against ``images`` (default: the file's folder)."""
    file = _file(path, "test.json")
    root = Path(images) if images is not None else file.parent
    items = []
    for i, row in enumerate(_read_json_list(file)):
        _require(row, ("prompt", "path1", "path2"), file, i)
        meta = {k: row[k] for k in ("model1", "model2", "confidence", "choice_dist") if k in row}
        items.append(
            Item(
                item_id=str(i),
                prompt=row["prompt"],
                images=(str(root / row["path1"]), str(root / row["path2"])),
                ranking=(1.0, 2.0),
                meta=meta,
            )
        )
    return items


_PICKAPIC_PROMPT = ("caption", "prompt")
_PICKAPIC_IMAGES = (("jpg_0", "jpg_1"), ("image_0", "image_1"), ("image_0_url", "image_1_url"))
_PICKAPIC_IDS = ("ranking_id", "pair_id")


def load_pickapic(
    source: str | Path | Any,
    *,
    split: str | None = None,
    with_images: bool = False,
    aspect: str | None = None,
) -> list[Item]:
    """Rows in Pick-a-Pic columns: ``caption`` (or ``prompt``), ``jpg_0``/``jpg_1`` (or ``image_0``/
    ``image_1``, as a visionprefer dataset's ``pairs`` config), ``label_0`` (1 = image 0 preferred, 0 =
    image 1, 0.5 = tie; ``label_1`` when present must be ``1 - label_0``).

    ``source`` is a parquet file, a folder of parquet files (recursively; with ``split``, only files whose
    name starts with ``<split>-`` or that sit in a ``<split>/`` folder, the Hub layout), a folder written
    by ``datasets.save_to_disk``, a ``datasets.Dataset`` or any iterable of mappings. Item id =
    ``ranking_id``, else ``pair_id``, else the row index. Image bytes are read only with ``with_images``
    (scores from a file need none); without them an image reference is ``"<item_id>/<0|1>"``. ``aspect``
    keeps only rows whose ``aspect`` column equals it (a visionprefer dataset has one row per aspect).
    """
    rows = _pickapic_rows(source, split, with_images)
    items = []
    for i, row in enumerate(rows):
        if aspect is not None and row.get("aspect") != aspect:
            continue
        prompt_key = next((k for k in _PICKAPIC_PROMPT if k in row), None)
        if prompt_key is None or "label_0" not in row:
            raise SourceError(f"row {i}: Pick-a-Pic rows need caption (or prompt) and label_0")
        label = float(row["label_0"])
        if label not in (0.0, 0.5, 1.0):
            raise SourceError(f"row {i}: label_0 must be 0, 0.5 or 1, got {row['label_0']!r}")
        if row.get("label_1") is not None and float(row["label_1"]) != 1.0 - label:
            raise SourceError(f"row {i}: label_1 = {row['label_1']!r} is not 1 - label_0")
        id_key = next((k for k in _PICKAPIC_IDS if row.get(k) is not None), None)
        item_id = str(row[id_key]) if id_key else str(i)
        pair = next((p for p in _PICKAPIC_IMAGES if p[0] in row and p[1] in row), None)
        images = (row[pair[0]], row[pair[1]]) if (with_images and pair) else (f"{item_id}/0", f"{item_id}/1")
        meta = {k: row[k] for k in ("model_0", "model_1", "image_0_uid", "image_1_uid") if k in row}
        items.append(
            Item(
                item_id=item_id,
                prompt=row[prompt_key],
                images=images,
                ranking={1.0: (1.0, 2.0), 0.0: (2.0, 1.0), 0.5: (1.0, 1.0)}[label],
                aspect=row.get("aspect"),
                image_ids=(str(row["image_id_0"]), str(row["image_id_1"])) if "image_id_0" in row else None,
                meta=meta,
            )
        )
    return items


def load_mjbench(
    source: str | Path | Any, *, subset: str | None = None, images: str | Path | None = None
) -> list[Item]:
    """MJ-Bench rows ``{caption, image0, image1, label[, id, category]}``, ``label`` = index of the
    preferred image (0 or 1; 0.5 or ``"tie"`` is a tie).

    ``source`` is one of: a JSON file of such rows (the repository's ``alignment/benchmark/<category>/
    <file>.json``; the category is the folder name), a folder of them (each JSON file's parent folder is
    its category; only files ending ``_test.json`` whose name is ``<category>_test.json`` are read when
    the folder has that layout, so the per-source files are not counted twice), a parquet file or folder
    (the Hub layout; with ``subset``, files of that split), or an iterable of mappings. Image file names
    resolve against ``images`` (default: the JSON file's folder); image objects/bytes are kept as they are.
    """
    if isinstance(source, (str, Path)) and Path(source).suffix == ".json":
        return _mjbench_items(
            _read_json_list(Path(source)), Path(source).parent.name, images or Path(source).parent
        )
    if isinstance(source, (str, Path)) and Path(source).is_dir() and not _parquet_files(Path(source), None):
        root = Path(source)
        files = sorted(root.rglob("*_test.json"))
        combined = [f for f in files if f.name == f"{f.parent.name}_test.json"]
        items = []
        for f in combined or files:
            items.extend(_mjbench_items(_read_json_list(f), f.parent.name, images or f.parent))
        return items
    rows = (
        _pickapic_rows(source, subset, with_images=True) if isinstance(source, (str, Path)) else list(source)
    )
    return _mjbench_items(rows, None, images)


def _mjbench_items(rows: Iterable[Mapping[str, Any]], category: str | None, images: Any) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        for key in ("caption", "image0", "image1", "label"):
            if key not in row:
                raise SourceError(f"MJ-Bench row {i}: missing {key!r}")
        label = row["label"]
        ranking = {0: (1.0, 2.0), 1: (2.0, 1.0)}.get(label) if not isinstance(label, bool) else None
        if ranking is None:
            if label in (0.5, "tie"):
                ranking = (1.0, 1.0)
            else:
                raise SourceError(f"MJ-Bench row {i}: label must be 0, 1 or a tie, got {label!r}")

        def ref(value: Any) -> Any:
            return str(Path(images) / value) if isinstance(value, str) and images is not None else value

        cat = (
            row.get("category") or (row.get("info") if isinstance(row.get("info"), str) else None) or category
        )
        item_id = str(row["id"]) if row.get("id") is not None else str(i)
        if category is not None and row.get("id") is not None:
            item_id = f"{category}/{row['id']}"  # ids repeat across the category folders
        items.append(
            Item(
                item_id=item_id,
                prompt=row["caption"],
                images=(ref(row["image0"]), ref(row["image1"])),
                ranking=ranking,
                aspect=cat,
                meta={"source": row["source"]} if "source" in row else {},
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------
# Rating set


def load_tifa160(path: str | Path, *, images: str | Path | None = None) -> list[Item]:
    """TIFA's ``human_annotations/human_annotations.json`` (or the ``_with_scores`` file):
    ``{image key: {text_id, image_path, text, human_scores: [int, int], human_avg}}``.

    One item per ``text_id`` (caption), its images in file order; ``likert`` = ``human_avg``;
    ``image_ids`` = the image keys. The two raw ratings are in ``meta["human_scores"]``. Images resolve
    against ``images`` (default: the JSON's folder)."""
    file = _file(path, "human_annotations.json")
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SourceError(f"{file}: expected a JSON object keyed by image key")
    root = Path(images) if images is not None else file.parent
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for key, row in data.items():
        _require(row, ("text_id", "image_path", "text", "human_avg"), file, key)
        groups.setdefault(str(row["text_id"]), []).append((key, row))
    items = []
    for text_id, rows in groups.items():
        items.append(
            Item(
                item_id=text_id,
                prompt=rows[0][1]["text"],
                images=tuple(str(root / r["image_path"]) for _, r in rows),
                likert=tuple(float(r["human_avg"]) for _, r in rows),
                image_ids=tuple(k for k, _ in rows),
                meta={"human_scores": [list(r.get("human_scores", [])) for _, r in rows]},
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------
# Helpers


def _file(path: str | Path, default_name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    if not p.is_file():
        raise SourceError(f"{p}: no such file")
    return p


def _read_json_list(file: Path) -> list[dict[str, Any]]:
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise SourceError(f"{file}: not JSON or JSONL ({e})") from None
    if not isinstance(data, list):
        raise SourceError(f"{file}: expected a JSON array of objects")
    return data


def _require(row: Any, keys: Sequence[str], file: Path, where: Any) -> None:
    if not isinstance(row, Mapping):
        raise SourceError(f"{file}: entry {where} is not an object")
    missing = [k for k in keys if k not in row]
    if missing:
        raise SourceError(f"{file}: entry {where} lacks {', '.join(missing)}")


def _number(value: Any, file: Path, where: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SourceError(f"{file}: entry {where}: rank {value!r} is not a number")
    return float(value)


def _parquet_files(root: Path, split: str | None) -> list[Path]:
    files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
    if split is not None:
        files = [f for f in files if f.name.startswith(f"{split}-") or f.parent.name == split]
    return files


def _pickapic_rows(source: Any, split: str | None, with_images: bool) -> list[dict[str, Any]]:
    """Rows of a parquet file/folder, a save_to_disk folder, a datasets.Dataset or an iterable."""
    image_columns = {c for pair in _PICKAPIC_IMAGES for c in pair} | {"image0", "image1"}
    if isinstance(source, (str, Path)):
        root = Path(source)
        if root.is_dir() and ((root / "dataset_info.json").exists() or (root / "dataset_dict.json").exists()):
            import datasets

            ds = datasets.load_from_disk(str(root))
            if isinstance(ds, datasets.DatasetDict):
                if split is None:
                    raise ConfigError(f"{root}: a DatasetDict; give split= one of {', '.join(ds)}")
                ds = ds[split]
            return _pickapic_rows(ds, None, with_images)
        if not root.exists():
            raise SourceError(f"{root}: no such file or folder")
        import pyarrow.parquet as pq

        files = _parquet_files(root, split)
        if not files:
            raise SourceError(f"{root}: no parquet files" + (f" for split {split!r}" if split else ""))
        rows: list[dict[str, Any]] = []
        for f in files:
            names = pq.ParquetFile(f).schema_arrow.names
            columns = names if with_images else [n for n in names if n not in image_columns]
            rows.extend(pq.read_table(f, columns=columns).to_pylist())
        return rows
    if hasattr(source, "column_names") and hasattr(source, "remove_columns"):  # a datasets.Dataset
        if not with_images:
            source = source.remove_columns([c for c in source.column_names if c in image_columns])
        return [dict(r) for r in source]
    return [dict(r) for r in source]
