"""``status`` of the pairs stage: the pairs written, their ties and how many the dpo config holds."""

from __future__ import annotations

from typing import Any

from ..config import BuildConfig
from ..rundir import RunDir, read_jsonl


def pairs_status(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    from .stage import is_dpo_pair, pairs_path

    if config.annotate.backend == "none":
        return {"state": "off", "done": 0, "pending": 0, "failed": 0, "pairs": 0}
    if not pairs_path(run).exists():
        return {"state": "not run", "done": 0, "pending": None, "failed": 0, "pairs": 0}
    n = ties = dpo = 0
    for p in read_jsonl(pairs_path(run)):  # counted as they are read: a run has several pairs per image
        n += 1
        ties += p["label_0"] == 0.5
        dpo += is_dpo_pair(p, config.publish.dpo_aspect)
    return {
        "state": "done",
        "done": n,
        "pending": 0,
        "failed": 0,
        "pairs": n,
        "ties": ties,
        "tie_rate": round(ties / n, 4) if n else None,
        "dpo_pairs": dpo,  # what the dpo config holds (one aspect, no ties)
    }
