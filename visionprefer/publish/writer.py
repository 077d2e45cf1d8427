"""Streaming Parquet shards with ``datasets`` features: bounded memory, deterministic bytes.

Rows are encoded as ``Features.encode_example`` encodes them (:func:`row_encoder`) and written in small record batches through
``pyarrow.parquet.ParquetWriter`` with ``Features.arrow_schema`` (which carries the ``huggingface`` features
metadata, so ``load_dataset`` decodes ``Image()`` columns). Only one batch of rows is in memory at a time.
Each shard is written to a temporary name and renamed, so a crash never leaves a shard that looks complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

BATCH_ROWS = 64


def row_encoder(features: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``features.encode_example`` for rows of plain Python values (what JSON decodes to, ``bytes``, and
    dicts and lists of them: every row the publish stage makes), in a fraction of its time.

    ``Features.encode_example`` is ``encode_nested_example(features, cast_to_python_objects(row))``; the
    cast turns NumPy, PyTorch, pandas and PIL values into Python ones and returns plain Python values as
    they are, and walking every value for them was most of a row's time. Here the cast is left out and the
    columns are encoded as ``encode_nested_example`` encodes a top-level dict: a leaf feature (``Value``,
    ``Image``) by its own ``encode_example`` (``None`` stays ``None``), a struct or list column by
    ``encode_nested_example`` at depth 1. The encoded rows, hence the Parquet bytes, are the same."""
    from datasets.features.features import LargeList, List, encode_nested_example

    def leaf(feature: Any) -> Callable[[Any], Any]:
        def encode(value: Any) -> Any:
            return feature.encode_example(value) if value is not None else None

        return encode

    def nested(feature: Any) -> Callable[[Any], Any]:
        def encode(value: Any) -> Any:
            return encode_nested_example(feature, value, level=1)

        return encode

    encoders: list[tuple[str, Callable[[Any], Any]]] = []
    for name, feature in features.items():
        if isinstance(feature, dict | LargeList | List) or not hasattr(feature, "encode_example"):
            encoders.append((name, nested(feature)))
        else:
            encoders.append((name, leaf(feature)))

    def encode_row(row: dict[str, Any]) -> dict[str, Any]:
        return {name: enc(row.get(name)) for name, enc in encoders}

    return encode_row


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def write_shards(
    folder: Path,
    features: Any,
    rows: Iterable[dict[str, Any]],
    *,
    total: int,
    rows_per_shard: int,
    prefix: str = "train",
    on_row: Callable[[], None] | None = None,
) -> list[Path]:
    """Write ``total`` rows as ``<prefix>-0000i-of-0000n.parquet`` shards in ``folder`` (replacing old ones)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    remove_shards(folder, prefix)
    n_shards = max(1, -(-total // rows_per_shard))
    schema = features.arrow_schema
    encode = row_encoder(features)
    paths: list[Path] = []
    it = iter(rows)
    for shard in range(n_shards):
        path = folder / f"{prefix}-{shard:05d}-of-{n_shards:05d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            shard_rows = islice(it, rows_per_shard) if shard < n_shards - 1 else it
            # An empty split's shard has the schema and no row group: `datasets` reads a file in batches of
            # its first row group's size, and a row group of zero rows would make that zero (an error).
            for batch in _batches(shard_rows, BATCH_ROWS):
                encoded = [encode(r) for r in batch]
                writer.write_batch(pa.RecordBatch.from_pylist(encoded, schema=schema))
                if on_row is not None:
                    for _ in batch:
                        on_row()
        os.replace(tmp, path)
        paths.append(path)
    return paths


def remove_shards(folder: Path, prefix: str) -> None:
    """Delete the shards ``<prefix>-*.parquet`` of ``folder`` (``validation-*`` leaves ``validation_unique-*``)."""
    for old in folder.glob(f"{prefix}-*.parquet"):
        old.unlink()
