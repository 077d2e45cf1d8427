"""The run directory: where a build keeps everything, and how it survives crashes.

Layout (``<run>`` is the config's ``run_dir`` or ``--out``)::

    <run>/run.json                      marker: package version, current config fingerprint, history
    <run>/config.yaml                   snapshot of the resolved config (no secrets: none are in configs)
    <run>/configs/<fingerprint>.yaml    every config the run has seen
    <run>/prompts/prompts.jsonl         kept prompts (rewritten atomically by the prompts stage)
    <run>/prompts/rejected.jsonl        prompts dropped by cleaning or failed, with the reason
    <run>/generate/done-rank<R>.jsonl   one record per finished image (append-only, per process)
    <run>/generate/failed-rank<R>.jsonl one record per failed attempt, with reason and kind
    <run>/images/<ab>/<image_id>.<ext>  image files, one per image key
    <run>/llm/responses-rank<R>.jsonl   every paid LLM answer, keyed by the full request (never re-requested)
    <run>/llm/usage-rank<R>.jsonl       one record per LLM attempt: tokens and dollars, or the error
    <run>/logs/

Guarantees:

* **Atomic files.** Whole files are written to a temporary name in the same folder, fsynced and renamed.
* **Append-only logs.** A record is one JSON line, appended and fsynced after the thing it describes is on
  disk. A crash can leave a torn last line; readers skip lines that do not parse, and the next writer
  starts on a fresh line. So a record present means the item is complete.
* **Per-process files.** Each rank appends only to its own ``*-rank<R>.jsonl``; readers take the union.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from .errors import FAILURE_KINDS, RunDirError, classify_failure

MARKER = "run.json"
T = TypeVar("T")


# --------------------------------------------------------------------------------------------- files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_chunks(path, [data])


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux ``/proc``); elsewhere
    set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open``: 0o666 less the umask (0o644 under the usual 022)."""
    return 0o666 & ~current_umask()


def atomic_write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` atomically with the concatenated ``chunks`` (written as they come, so a large file
    is never held in memory): temporary file in the same folder, fsync, rename. The file gets the mode
    ``open`` would give it (``mkstemp``'s 0600 is widened to 0666 less the umask), like every other file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_record(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` atomically with one JSON line per record (``records`` may be a generator: they are
    written as they come)."""
    atomic_write_chunks(path, ((dumps_record(r) + "\n").encode("utf-8") for r in records))


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records durably. A torn line left by an earlier crash is closed off first."""
    lines = "".join(dumps_record(r) + "\n" for r in records)
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(lines.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


class AppendFile:
    """A JSONL file open for appending, one ``write`` per record on an ``O_APPEND`` descriptor.

    Once ``append`` returns, the record survives a ``kill -9`` of the process (it is in the kernel); it is
    fsynced on ``close``. Cheaper than :func:`append_jsonl` for hot paths such as the LLM layer.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(self._fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(self._fd, b"\n")  # close a torn line left by a crash
        return self._fd

    def append(self, record: dict[str, Any]) -> int:
        """Append one record; returns the byte offset where it starts."""
        fd = self._open()
        line = (dumps_record(record) + "\n").encode("utf-8")
        offset = os.fstat(fd).st_size
        os.write(fd, line)
        return offset

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of one JSONL file; torn or corrupt lines (from a crash) are skipped."""
    for _, record in iter_jsonl(path):
        yield record


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(byte offset, record)`` for the records :func:`read_jsonl` yields: the offset lets a reader keep
    only where a record is and read it back later (:class:`StoredRecords`)."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        offset = 0
        for line in f:
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                return  # torn final line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield start, record


class StoredRecords(Sequence[dict[str, Any]]):
    """A sequence of JSON records that stay on disk: each is an address (file, byte offset of its line) in
    JSONL files and is read back (seek, one line, ``json.loads``) whenever it is accessed.

    A list of records whose size grows with the run (one generation record per image, one line per prompt
    or pair) costs kilobytes per item in memory; this costs 8 bytes per item, at the price of parsing the
    line again on every pass. Iterating opens each file once per pass, so re-iterating is cheap enough for
    a handful of passes. The files must not be rewritten while the sequence is in use: run-directory logs
    only grow, and a stage's own output files are replaced only by that stage.
    """

    def __init__(self, paths: Sequence[Path], addresses: Iterable[int] = ()):
        self.paths = list(paths)
        # One int64 per record: offset * number of files + file number.
        self._addresses = addresses if isinstance(addresses, array) else array("q", addresses)

    @classmethod
    def of_file(cls, path: Path) -> StoredRecords:
        """Every record of one JSONL file, as :func:`read_jsonl` reads them (in file order)."""
        return cls([path], (offset for offset, _ in iter_jsonl(path)))

    def __len__(self) -> int:
        return len(self._addresses)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> StoredRecords: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | StoredRecords:
        if isinstance(index, slice):
            return StoredRecords(self.paths, self._addresses[index])
        file_no, offset = self._locate(self._addresses[index])
        with open(self.paths[file_no], "rb") as f:
            return self._read(f, offset)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with contextlib.ExitStack() as stack:
            files: dict[int, Any] = {}
            for address in self._addresses:
                file_no, offset = self._locate(address)
                f = files.get(file_no)
                if f is None:
                    f = files[file_no] = stack.enter_context(open(self.paths[file_no], "rb"))
                yield self._read(f, offset)

    def take(self, positions: Iterable[int]) -> StoredRecords:
        """The records at these positions, in that order."""
        return StoredRecords(self.paths, (self._addresses[i] for i in positions))

    def select(self, keep: Callable[[dict[str, Any]], bool]) -> StoredRecords:
        """The records for which ``keep`` is true, in the same order (one pass; 8 bytes per kept record)."""
        return StoredRecords(
            self.paths, (a for a, rec in zip(self._addresses, self, strict=True) if keep(rec))
        )

    def partition(self, buckets: Callable[[dict[str, Any]], Iterable[int]], n: int) -> list[StoredRecords]:
        """The records in ``n`` sequences, in one pass: each record goes to every bucket of
        ``buckets(record)`` (none, one or several of ``range(n)``), in the same order (8 bytes per record
        placed). :meth:`select` of ``n`` conditions at the price of one."""
        out = [array("q") for _ in range(n)]
        for a, rec in zip(self._addresses, self, strict=True):
            for b in buckets(rec):
                out[b].append(a)
        return [StoredRecords(self.paths, addresses) for addresses in out]

    def _locate(self, address: int) -> tuple[int, int]:
        offset, file_no = divmod(address, len(self.paths))
        return file_no, offset

    @staticmethod
    def _read(f: Any, offset: int) -> dict[str, Any]:
        f.seek(offset)
        return json.loads(f.readline())


# --------------------------------------------------------------------------------------------- stage logs
@dataclass
class StageState:
    """What a stage's logs say: finished records by key (or only the finished keys, a set, from
    :meth:`StageLog.keys_state`), and the latest failure of unfinished keys."""

    done: Any = field(default_factory=dict)  # dict[key, record], or set[key]
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def blocked(self, retry_failed: bool) -> set[str]:
        """Keys not to attempt this run: permanent failures, unless ``--retry-failed``."""
        if retry_failed:
            return set()
        return {k for k, f in self.failed.items() if f.get("kind") == "permanent"}


class StageLog:
    """Per-rank append-only logs of one stage: ``done-rank<R>.jsonl`` and ``failed-rank<R>.jsonl``.

    Records go through :class:`AppendFile`: a record is in the kernel once the call returns, so it survives
    a ``kill -9``; files are fsynced on :meth:`close`.
    """

    def __init__(self, folder: Path, key_field: str, rank: int = 0):
        self.folder = folder
        self.key_field = key_field
        self.rank = rank
        self._done = AppendFile(self.done_path)
        self._failed = AppendFile(self.failed_path)

    @property
    def done_path(self) -> Path:
        return self.folder / f"done-rank{self.rank}.jsonl"

    @property
    def failed_path(self) -> Path:
        return self.folder / f"failed-rank{self.rank}.jsonl"

    def record_done(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._done.append(record)

    def record_failed(
        self,
        keys: Iterable[str],
        *,
        reason: str,
        kind: str,
        raw: str | None = None,
        failure_kind: str | None = None,
    ) -> None:
        """One failure record per key: ``reason`` (the detail), ``kind`` (``transient`` or ``permanent``:
        whether the next run retries it), ``failure_kind`` (the cause, from
        :data:`~visionprefer.errors.FAILURE_KINDS`; classified from the reason when not given) and the raw
        answer, if any."""
        if failure_kind not in FAILURE_KINDS:
            failure_kind = classify_failure(reason)
        now = time.time()
        for key in keys:
            self._failed.append(
                {
                    self.key_field: key,
                    "reason": reason,
                    "kind": kind,
                    "failure_kind": failure_kind,
                    "raw": raw,
                    "time": now,
                }
            )

    def close(self) -> None:
        self._done.close()
        self._failed.close()

    def state(self) -> StageState:
        st = StageState()
        for path in self.done_paths():
            for rec in read_jsonl(path):
                key = rec.get(self.key_field)
                if key is not None:
                    st.done.setdefault(key, rec)
        st.failed = self.failures(st.done.__contains__)
        return st

    def keys_state(self, keep: Callable[[dict[str, Any]], bool] | None = None) -> StageState:
        """:meth:`state` with ``done`` as the set of finished keys, not their records (a stage that only
        asks "is this key done?" then holds some 100 bytes a key instead of the parsed record)."""
        index = self.done_index(keep)
        return StageState(done=set(index), failed=self.failures(index.has_record))

    def done_paths(self) -> list[Path]:
        """Every rank's done log, in the order readers take their union (the first record of a key wins)."""
        return sorted(self.folder.glob("done-rank*.jsonl"))

    def failures(self, finished: Callable[[Any], bool]) -> dict[Any, dict[str, Any]]:
        """``state().failed`` given which keys have a done record: the latest failure of every unfinished
        key, with its number of attempts."""
        records: list[dict[str, Any]] = []
        for path in sorted(self.folder.glob("failed-rank*.jsonl")):
            records.extend(read_jsonl(path))
        records.sort(key=lambda r: r.get("time", 0))
        failed: dict[Any, dict[str, Any]] = {}
        for rec in records:
            key = rec.get(self.key_field)
            if key is not None and not finished(key):
                prev = failed.get(key)
                attempts = (prev or {}).get("attempts", 0) + 1
                failed[key] = {**rec, "attempts": attempts}
        return failed

    def done_index(self, keep: Callable[[dict[str, Any]], bool] | None = None) -> LogIndex:
        """``state().done`` as a :class:`LogIndex` (addresses instead of records); ``keep`` drops keys whose
        first record it rejects, as :func:`visionprefer.generate.stage.generation_state` drops images whose
        file has vanished."""
        return LogIndex(self.done_paths(), self.key_field, keep)


_FILE_SHIFT = 40  # a LogIndex address: (file number << 40 | byte offset) << 1 | dropped
_INDEX_CHUNK = 1 << 15  # keys encoded per step while an index is built


class LogIndex:
    """Where the first record of each key is in a stage's done logs, without the records.

    The same keys, in the same order, as ``StageLog.state().done`` (files in :meth:`StageLog.done_paths`
    order, lines as :func:`read_jsonl` reads them, the first record of a key wins). Records are read back
    on demand through :meth:`records`.

    String keys are held in two sorted numpy arrays, the key's UTF-8 bytes (fixed width: 20 bytes for the
    run's hex keys) and an 8-byte address, so the index costs some 28 bytes a key (a dict of key strings
    cost about 120, and the parsed record of a judge group several KB); a lookup is a binary search.
    Other keys (never written by the package) are kept in a dict.

    With ``keep``, a key whose first record ``keep`` rejects is left out (later records of it do not bring
    it back), but still counts as logged in :meth:`has_record`: a stage's failures are those of keys without
    any done record. ``keep`` sees every record that has a key.
    """

    def __init__(
        self, paths: Sequence[Path], key_field: str, keep: Callable[[dict[str, Any]], bool] | None = None
    ):
        import numpy as np

        self.paths = list(paths)
        self._other: dict[Any, int] = {}  # keys that are not plain strings: key -> address
        capacity = sum(_count_lines(p) for p in self.paths)
        width = 1
        table = np.empty(capacity, dtype=[("k", f"S{width}"), ("a", "<i8")])
        n = 0
        keys: list[bytes] = []
        addresses: list[int] = []

        def flush() -> None:
            nonlocal table, width, n
            if not keys:
                return
            chunk = np.array(keys)
            if chunk.dtype.itemsize > width:  # a longer key than any so far: widen (rare)
                width = chunk.dtype.itemsize
                wider = np.empty(capacity, dtype=[("k", f"S{width}"), ("a", "<i8")])
                wider[:n] = table[:n]
                table = wider
            table["k"][n : n + len(keys)] = chunk
            table["a"][n : n + len(keys)] = addresses
            n += len(keys)
            keys.clear()
            addresses.clear()

        for file_no, path in enumerate(self.paths):
            for offset, rec in iter_jsonl(path):
                key = rec.get(key_field)
                if key is None:
                    continue
                address = ((file_no << _FILE_SHIFT | offset) << 1) | (keep is not None and not keep(rec))
                if not isinstance(key, str) or not key or key.endswith("\0"):
                    self._other.setdefault(key, address)
                    continue
                keys.append(key.encode("utf-8"))
                addresses.append(address)
                if len(keys) >= _INDEX_CHUNK:
                    flush()
        flush()
        table = table[:n]
        table.sort(order=["k", "a"])  # by key, then in reading order: the first record of a key first
        if n > 1:
            first = np.empty(n, dtype=bool)
            first[0] = True
            np.not_equal(table["k"][1:], table["k"][:-1], out=first[1:])
            if not first.all():
                table = table[first]
        self._keys = table["k"]
        self._addresses = table["a"]
        self._len = int(n and np.count_nonzero((self._addresses & 1) == 0)) + sum(
            1 for a in self._other.values() if not a & 1
        )

    def _address(self, key: Any) -> int | None:
        """The address of the first record of ``key`` (its low bit set when ``keep`` rejected it)."""
        if not isinstance(key, str) or not key or key.endswith("\0"):
            try:
                return self._other.get(key)
            except TypeError:  # unhashable
                return None
        encoded = key.encode("utf-8")
        if len(encoded) > self._keys.dtype.itemsize:
            return None
        i = bisect.bisect_left(self._keys, encoded)
        if i < len(self._keys) and self._keys[i] == encoded:
            return int(self._addresses[i])
        return None

    def __contains__(self, key: object) -> bool:
        address = self._address(key)
        return address is not None and not address & 1

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        """The kept keys in the order their first records were read."""
        import numpy as np

        kept = np.flatnonzero((self._addresses & 1) == 0)
        kept = kept[np.argsort(self._addresses[kept], kind="stable")]
        others = sorted((a, k) for k, a in self._other.items() if not a & 1) if self._other else []
        j = 0
        for i in kept:
            address = self._addresses[i]
            while j < len(others) and others[j][0] < address:
                yield others[j][1]
                j += 1
            yield self._keys[i].decode("utf-8")
        for _, key in others[j:]:
            yield key

    def reading_rank(self, key: Any) -> int | None:
        """Where ``key``'s first record comes among the string keys' first records, in reading order (0 for
        the first key read; kept or not), or None for a key not in the index (nor one of the other keys).
        Sorting by it puts keys in file order: ``LogIndex([prompts_file], "prompt_id").reading_rank``
        gives a prompt's position in the prompt file for some 36 bytes a prompt, without a dict."""
        import numpy as np

        if not isinstance(key, str) or not key or key.endswith("\0"):
            return None
        encoded = key.encode("utf-8")
        if len(encoded) > self._keys.dtype.itemsize:
            return None
        i = int(np.searchsorted(self._keys, encoded))
        if i >= len(self._keys) or self._keys[i] != encoded:
            return None
        ranks = getattr(self, "_ranks", None)
        if ranks is None:
            ranks = self._ranks = np.empty(len(self._keys), dtype=np.int64)
            ranks[np.argsort(self._addresses, kind="stable")] = np.arange(len(self._keys))
        return int(ranks[i])

    def has_record(self, key: Any) -> bool:
        """Whether the logs hold a done record of ``key``, kept or not."""
        return self._address(key) is not None

    def records(self, keys: Iterable[Any]) -> StoredRecords:
        """The records of ``keys`` (each must be in the index), in that order."""
        n = len(self.paths)

        def stored(key: Any) -> int:
            address = self._address(key)
            if address is None or address & 1:
                raise KeyError(key)
            address >>= 1
            return (address & ((1 << _FILE_SHIFT) - 1)) * n + (address >> _FILE_SHIFT)

        return StoredRecords(self.paths, (stored(k) for k in keys))

    def sorted_records(self) -> StoredRecords:
        """The first record of every kept string key, in key order (UTF-8 byte order, which is the order
        of ``sorted`` on the keys)."""
        n = len(self.paths)
        mask = (1 << _FILE_SHIFT) - 1
        return StoredRecords(
            self.paths,
            ((int(a) >> 1 & mask) * n + (int(a) >> 1 >> _FILE_SHIFT) for a in self._addresses if not a & 1),
        )

    def join(self, planned: Iterable[tuple[T, Iterable[Any]]]) -> Iterator[Joined[T]]:
        """The planned keys ∩ this log, streamed: for each ``(item, keys)`` of ``planned`` (a prompt and its
        planned image keys, a judge group and its annotation key, ...), in the order given, the item, its
        distinct planned keys (in the order given), those with a done record here and their records (left
        on disk, read on access). What is held is this index and one item's keys at a time: readers of a
        run of any size (``status``, the annotate and pairs stages) go through here."""
        for item, keys in planned:
            wanted = list(dict.fromkeys(keys))
            done = [k for k in wanted if k in self]
            yield Joined(item, wanted, done, self.records(done))


@dataclass(frozen=True)
class Joined(Generic[T]):
    """One item of :meth:`LogIndex.join`: the item, its planned keys, the done ones and their records."""

    item: T
    planned: list[Any]
    done: list[Any]
    records: StoredRecords

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.planned)


def _count_lines(path: Path) -> int:
    """Newlines in ``path``: an upper bound on its records, read in blocks."""
    count = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                count += block.count(b"\n")
    except FileNotFoundError:
        return 0
    return count


# --------------------------------------------------------------------------------------------- run dir
class RunDir:
    """A run directory on disk. Creating one writes the marker; opening one checks it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # paths ---------------------------------------------------------------------------------------
    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    @property
    def prompts_file(self) -> Path:
        return self.prompts_dir / "prompts.jsonl"

    @property
    def rejected_file(self) -> Path:
        return self.prompts_dir / "rejected.jsonl"

    @property
    def llm_dir(self) -> Path:
        """Response cache and per-attempt usage of every LLM call (``responses-rank<R>.jsonl``, ``usage-*``)."""
        return self.root / "llm"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def image_path(self, image_id: str, ext: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.{ext}"

    def stage_log(self, stage: str, key_field: str, rank: int = 0) -> StageLog:
        return StageLog(self.root / stage, key_field, rank)

    # lifecycle -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> RunDir:
        run = cls(root)
        if not run.root.exists():
            raise RunDirError(f"{run.root}: run directory not found")
        if not run.marker.exists():
            raise RunDirError(f"{run.root}: not a visionprefer run directory (no {MARKER})")
        return run

    def prepare(self, config_snapshot: dict[str, Any], fingerprint: str) -> None:
        """Create the folder if needed and record the resolved config (rank 0 only)."""
        import yaml

        from . import __version__

        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"{self.root}: exists and is not a folder")
        if self.root.exists() and any(self.root.iterdir()) and not self.marker.exists():
            raise RunDirError(
                f"{self.root}: folder is not empty and is not a visionprefer run directory; choose another --out"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep_temporaries()
        meta = self.meta()
        history = meta.get("history", [])
        if not history or history[-1]["fingerprint"] != fingerprint:
            history.append({"fingerprint": fingerprint, "time": time.time(), "version": __version__})
        text = f"# visionprefer config snapshot, fingerprint {fingerprint}\n" + yaml.safe_dump(
            config_snapshot, sort_keys=False, allow_unicode=True
        )
        snapshot = self.root / "configs" / f"{fingerprint}.yaml"
        if not snapshot.exists():
            atomic_write_text(snapshot, text)
        atomic_write_text(self.root / "config.yaml", text)
        meta.update({"format": 1, "version": __version__, "fingerprint": fingerprint, "history": history})
        atomic_write_text(self.marker, json.dumps(meta, indent=2) + "\n")

    def sweep_temporaries(self) -> None:
        """Delete temporary files a killed run left behind (called before any process starts writing)."""
        for tmp in self.root.rglob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.marker.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def load_config(self):
        """The config snapshot of this run (what ``status`` and ``push`` use)."""
        import yaml

        from .config import config_from_dict

        path = self.root / "config.yaml"
        if not path.exists():
            raise RunDirError(f"{self.root}: no config.yaml snapshot; run `visionprefer build CONFIG` first")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return config_from_dict(data, base_dir=str(self.root), origin=str(path))
