"""Streaming Parquet shards with ``datasets`` features: bounded memory, deterministic bytes.

Rows are encoded with ``Features.encode_example`` and written in small record batches through
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
                encoded = [features.encode_example(r) for r in batch]
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
