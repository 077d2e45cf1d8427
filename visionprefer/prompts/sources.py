"""Prompt sources: local TXT, JSONL, JSON arrays, CSV/TSV and Parquet files.

A source yields :class:`RawPrompt` items in file order. A line that cannot be read (bad UTF-8, bad JSON,
missing key) is a :class:`RawFailure` for that item alone; a file that cannot be read at all is a
:class:`SourceError`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SourceConfig
from ..errors import SourceError, first_line

log = logging.getLogger(__name__)

# Tried in order when no column is configured: PartiPrompts uses "Prompt", DrawBench "Prompts".
DEFAULT_COLUMNS = ("prompt", "Prompt", "prompts", "Prompts", "caption", "text")
SUFFIX_FORMATS = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class RawPrompt:
    source: str
    source_index: int
    text: str


@dataclass(frozen=True)
class RawFailure:
    source: str
    source_index: int
    reason: str
    text: str | None = None


def detect_format(src: SourceConfig, path: Path) -> str:
    if src.format != "auto":
        return src.format
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; set `format` to one of "
            f"{', '.join(sorted(set(SUFFIX_FORMATS.values())))}"
        )
    return fmt


def read_source(src: SourceConfig, path: Path) -> Iterator[RawPrompt | RawFailure]:
    """Items of one source, at most ``src.limit`` of them. ``path`` is the resolved file, or for a Hub
    dataset the resolved local folder when ``hf_dataset`` names one (the dataset id otherwise)."""
    if src.hf_dataset is not None:
        yield from itertools.islice(_read_hf(src, path), src.limit)
        return
    if not path.exists():
        raise SourceError(f"{path}: prompt source not found")
    if path.is_dir():
        raise SourceError(f"{path}: prompt source is a folder, expected a file")
    if src.benchmark is not None and (src.format == "auto" or src.column is None):
        from dataclasses import replace

        from .benchmarks import benchmark_spec

        spec = benchmark_spec(src.benchmark)
        fmt = src.format if src.format != "auto" else spec["format"]
        src = replace(src, format=fmt, column=src.column or spec["column"])
    fmt = detect_format(src, path)
    reader = {
        "txt": _read_txt,
        "jsonl": _read_jsonl,
        "json": _read_json,
        "csv": _read_delimited,
        "tsv": _read_delimited,
        "parquet": _read_parquet,
    }[fmt]
    yield from itertools.islice(reader(src, path, fmt), src.limit)


# --------------------------------------------------------------------------------------------- helpers
def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bad_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    return "not valid UTF-8"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        first = True
        for i, line in enumerate(f):
            if first:
                line = line.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
                first = False
            yield i, line.rstrip(b"\r\n")


def _pick_column(src: SourceConfig, columns: list[str], path: Path) -> str:
    """The configured column (an error naming the columns found when it is missing), or, only when none is
    configured, the first of :data:`DEFAULT_COLUMNS` present (said once, as a warning)."""
    if src.column is not None:
        if src.column not in columns:
            raise SourceError(
                f"{path}: no column {src.column!r}; columns are: {', '.join(map(str, columns))}"
            )
        return src.column
    for name in DEFAULT_COLUMNS:
        if name in columns:
            _say_fallback(path, name)
            return name
    raise SourceError(
        f"{path}: no prompt column found (tried {', '.join(DEFAULT_COLUMNS)}); set `column` to one of: "
        f"{', '.join(map(str, columns))}"
    )


def _say_fallback(path: Path, column: str) -> None:
    if column != "prompt":  # the documented default needs no note
        log.warning("%s: no `column` configured; reading prompts from column %r", path, column)


class _Records:
    """Picks the key of JSON records: the configured one (a record without it is an error naming the keys
    found when it is the first record, so a misspelt column stops the source instead of failing every
    row; a later record without it fails alone), or, when none is configured, the first of
    :data:`DEFAULT_COLUMNS` in each record, with the fallback said once per source."""

    def __init__(self, src: SourceConfig, path: Path):
        self.src, self.path, self.first, self.said = src, path, True, False

    def item(self, index: int, value: Any) -> RawPrompt | RawFailure:
        first, self.first = self.first, False
        key = self.src.column
        if isinstance(value, dict):
            if key is not None and key not in value and first:
                raise SourceError(
                    f"{self.path}: no key {key!r} in the first record; keys are: {', '.join(map(str, value))}"
                )
            if key is None:
                key = next((k for k in DEFAULT_COLUMNS if k in value), "prompt")
                if not self.said and key in value:
                    _say_fallback(self.path, key)
                    self.said = True
        return _from_value(self.src.source_name, index, value, key)


def _from_value(name: str, index: int, value: Any, key: str | None) -> RawPrompt | RawFailure:
    if isinstance(value, dict):
        wanted = key or next((k for k in DEFAULT_COLUMNS if k in value), "prompt")
        if wanted not in value:
            return RawFailure(
                name, index, f"record has no key {wanted!r} (keys: {', '.join(map(str, value))})"
            )
        value = value[wanted]
    if not isinstance(value, str):
        return RawFailure(name, index, f"prompt is a {type(value).__name__}, not a string")
    return RawPrompt(name, index, value)


# --------------------------------------------------------------------------------------------- readers
def _read_txt(src: SourceConfig, path: Path, fmt: str) -> Iterator[RawPrompt | RawFailure]:
    for i, raw in _lines(path):
        text = _decode(raw)
        yield (
            RawPrompt(src.source_name, i, text)
            if text is not None
            else RawFailure(src.source_name, i, _bad_utf8(raw))
        )


def _read_jsonl(src: SourceConfig, path: Path, fmt: str) -> Iterator[RawPrompt | RawFailure]:
    records = _Records(src, path)
    for i, raw in _lines(path):
        if not raw.strip():
            continue
        text = _decode(raw)
        if text is None:
            yield RawFailure(src.source_name, i, _bad_utf8(raw))
            continue
        try:
            value = json.loads(text)
        except ValueError as e:
            yield RawFailure(src.source_name, i, f"invalid JSON: {e}")
            continue
        yield records.item(i, value)


def _read_json(src: SourceConfig, path: Path, fmt: str) -> Iterator[RawPrompt | RawFailure]:
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    text = _decode(raw)
    if text is None:
        raise SourceError(f"{path}: {_bad_utf8(raw)}")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SourceError(f"{path}: invalid JSON: {e}") from None
    if isinstance(data, dict) and src.column and isinstance(data.get(src.column), list):
        data = data[src.column]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of strings or objects, got {type(data).__name__}")
    records = _Records(src, path)
    for i, value in enumerate(data):
        yield records.item(i, value)


def _read_delimited(src: SourceConfig, path: Path, fmt: str) -> Iterator[RawPrompt | RawFailure]:
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    # Undecodable bytes become lone surrogates, so one bad row fails alone instead of the whole file.
    text = raw.decode("utf-8", errors="surrogateescape")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffe")  # the csv module refuses NUL; the row fails in cleaning
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader)
    except StopIteration:
        raise SourceError(f"{path}: file is empty (expected a header row)") from None
    except csv.Error as e:
        raise SourceError(f"{path}: unreadable {fmt.upper()} header: {e}") from None
    col = header.index(_pick_column(src, header, path))
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield RawFailure(src.source_name, index, f"unreadable {fmt.upper()} row: {e}")
            index += 1
            continue
        if not row:
            continue
        if col >= len(row):
            yield RawFailure(src.source_name, index, f"row has {len(row)} fields, no {header[col]!r}")
        else:
            value = row[col]
            try:
                value.encode("utf-8")
                yield RawPrompt(src.source_name, index, value.replace("\ufffe", "\x00"))
            except UnicodeEncodeError:
                bad = value.encode("utf-8", errors="surrogateescape")
                yield RawFailure(src.source_name, index, _bad_utf8(bad))
        index += 1


def _read_parquet(src: SourceConfig, path: Path, fmt: str) -> Iterator[RawPrompt | RawFailure]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise SourceError(f"{path}: not a readable Parquet file ({e})") from None
    col = _pick_column(src, pf.schema_arrow.names, path)
    index = 0
    for batch in pf.iter_batches(columns=[col], batch_size=4096):
        for value in batch.column(0).to_pylist():
            if value is None:
                yield RawFailure(src.source_name, index, "prompt is null")
            else:
                yield _from_value(src.source_name, index, value, None)
            index += 1


def _read_hf(src: SourceConfig, path: Path) -> Iterator[RawPrompt | RawFailure]:
    """A Hugging Face dataset (Hub id or local folder) through ``datasets.load_dataset``.

    Datasets with loading scripts are refused by datasets >= 4; read their data files instead, e.g.
    DiffusionDB: ``{hf_dataset: poloclub/diffusiondb, data_files: metadata.parquet, column: prompt}``.
    """
    import datasets

    target = str(path) if path.exists() else str(src.hf_dataset)
    kwargs: dict[str, Any] = {"split": src.split, "revision": src.revision}
    if src.data_files is not None:
        kwargs["data_files"] = list(src.data_files) if isinstance(src.data_files, tuple) else src.data_files
    try:
        ds = datasets.load_dataset(target, src.subset, **kwargs)
    except (FileNotFoundError, ValueError, OSError, datasets.exceptions.DatasetNotFoundError) as e:
        first = first_line(e)
        raise SourceError(f"hf_dataset {src.hf_dataset!r}: cannot load ({first})") from None
    col = _pick_column(src, list(ds.column_names), Path(str(src.hf_dataset)))
    for index, value in enumerate(ds[col]):
        if value is None:
            yield RawFailure(src.source_name, index, "prompt is null")
        else:
            yield _from_value(src.source_name, index, value, None)
