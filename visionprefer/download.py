"""Files fetched by URL (not from the Hub): the LAION aesthetic head, TIFA and benchmark prompt files.

``cache_root()`` is ``$VISIONPREFER_CACHE`` or ``~/.cache/visionprefer``. Downloads stream into a temporary
file beside the target and are renamed into place only after they are checked, so a broken download never
looks cached. Every caller takes an injectable ``downloader(url, dest)`` so tests never touch the network.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import SourceError, first_line

Downloader = Callable[[str, Path], None]


def cache_root() -> Path:
    env = os.environ.get("VISIONPREFER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "visionprefer"


def urllib_download(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """The default downloader: stream ``url`` into ``dest`` with the standard library."""
    request = urllib.request.Request(url, headers={"User-Agent": "visionprefer"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def cached_download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    recheck_cached: bool = True,
    downloader: Downloader | None = None,
    name: str | None = None,
    error: type[Exception] = SourceError,
) -> Path:
    """``dest`` if it is there and valid, else download ``url`` to it: into a temporary file beside it,
    checked, then renamed into place, under a file lock (several processes may ask at once).

    Valid means: ``sha256`` matches (when given) and ``check(path)`` does not raise (when given; it raises
    an exception whose message says what is wrong, which propagates for a new download). A cached file is
    checked again unless ``recheck_cached`` is false; one that fails is fetched again. A download that
    fails is one line of type ``error`` naming ``name`` (default: the URL) and saying where a local copy
    can go.
    """
    from filelock import FileLock

    def verify(path: Path) -> None:
        if sha256 is not None:
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            if got != sha256:
                raise error(f"{url}: downloaded file has sha256 {got}, expected {sha256}")
        if check is not None:
            check(path)

    def cached() -> bool:
        if not dest.is_file():
            return False
        if not recheck_cached:
            return True
        try:
            verify(dest)
        except Exception:  # noqa: BLE001 - replaced or damaged by hand: fetch again
            return False
        return True

    if cached():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        if cached():
            return dest
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            try:
                (downloader or urllib_download)(url, tmp)
            except Exception as e:  # noqa: BLE001 - network errors come in many types; all are the user's to fix
                first = first_line(e)
                what = f"{name} from {url}" if name else url
                raise error(
                    f"cannot download {what} ({first}); pass a local copy, or place the file at {dest}"
                ) from None
            verify(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return dest
