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

from .errors import SourceError

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
    url: str, dest: Path, *, sha256: str | None = None, downloader: Downloader | None = None
) -> Path:
    """``dest`` if it is there (and matches ``sha256``), else download ``url`` to it, checked and atomic."""
    from filelock import FileLock

    def ok(path: Path) -> bool:
        return path.is_file() and (sha256 is None or hashlib.sha256(path.read_bytes()).hexdigest() == sha256)

    if ok(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if ok(dest):
            return dest
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            (downloader or urllib_download)(url, tmp)
        except Exception as e:  # network errors come in many types; all are the user's to fix
            tmp.unlink(missing_ok=True)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SourceError(f"cannot download {url} ({first}); pass a local copy instead") from None
        if sha256 is not None:
            got = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if got != sha256:
                tmp.unlink(missing_ok=True)
                raise SourceError(f"{url}: downloaded file has sha256 {got}, expected {sha256}")
        os.replace(tmp, dest)
    return dest
