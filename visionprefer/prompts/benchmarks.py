"""Public benchmark prompt sets as prompt sources: ``{benchmark: partiprompts}`` in a build config, or
``--prompts partiprompts`` for ``eval score``/``eval winrate``.

Each set has a spec in ``benchmarks/specs/<name>.yaml`` (canonical URL pinned to a commit, sha256, format,
prompt column, licence). The file is downloaded once into ``<cache>/benchmarks/`` and checked; a local copy
can be given instead with ``path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

PROMPT_SETS = ("partiprompts", "drawbench", "geneval", "imagereward")


def benchmark_spec(name: str) -> dict[str, Any]:
    import yaml

    from ..resources import data_path

    if name not in PROMPT_SETS:
        raise ConfigError(f"benchmark {name!r}: unknown prompt set; choose one of {', '.join(PROMPT_SETS)}")
    return yaml.safe_load(data_path(f"benchmarks/specs/{name}.yaml").read_text(encoding="utf-8"))


def benchmark_file(name: str, *, downloader: Any = None) -> Path:
    """The prompt file of benchmark ``name``, downloaded and verified on first use."""
    from ..download import cache_root, cached_download

    spec = benchmark_spec(name)
    dest = cache_root() / "benchmarks" / name / spec["filename"]
    return cached_download(spec["url"], dest, sha256=spec["sha256"], downloader=downloader)
