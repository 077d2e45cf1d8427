"""A synthetic preference dataset in the visionprefer ``pairs`` layout, with a rule a model can see.

Each pair's prompt names a colour ("a red square 3"); one image is that colour, the other another colour,
both with pixel noise, and ``label_0`` prefers the matching one. A share of the pairs are ties (neither
image matches: label 0.5). The rule is symmetric in the colours, so a model that ignores the prompt scores
about 0.5. Used by the tests and the benchmark; written as a dataset folder (Parquet shards with the
``datasets`` features, a card whose ``configs`` declare the splits) that ``load_dataset(folder, "pairs")``
reads like a published one.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

COLOURS = {"red": (200, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 210)}
TEMPLATES = ("a {c} square {i}", "a photo of {c} {i}", "{c} noise number {i}", "the {c} one {i}")


def _image(rng, colour: tuple[int, int, int], size: int, fmt: str = "PNG") -> bytes:
    import numpy as np
    from PIL import Image

    noise = rng.integers(-50, 51, (size, size, 3))
    pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def synthetic_rows(
    n: int,
    *,
    seed: int,
    size: int = 32,
    prompts_per_template: int = 3,
    tie_share: float = 0.1,
    fmt: str = "PNG",
) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    rows = []
    for k in range(n):
        colour = names[int(rng.integers(len(names)))]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        prompt = template.format(c=colour, i=int(rng.integers(prompts_per_template)))
        others = [c for c in names if c != colour]
        if rng.random() < tie_share:
            a, b = others
            label = 0.5
        else:
            a, b = colour, others[int(rng.integers(2))]
            label = 1.0
            if rng.random() < 0.5:
                a, b, label = b, a, 0.0
        img0, img1 = _image(rng, COLOURS[a], size, fmt), _image(rng, COLOURS[b], size, fmt)
        pid = hashlib.sha256(prompt.encode()).hexdigest()[:20]
        i0, i1 = hashlib.sha256(img0).hexdigest()[:20], hashlib.sha256(img1).hexdigest()[:20]
        rows.append(
            {
                "pair_id": hashlib.sha256(f"{seed}-{k}".encode()).hexdigest()[:20],
                "prompt_id": pid,
                "prompt": prompt,
                "aspect": "overall",
                "image_id_0": i0,
                "image_id_1": i1,
                "image_0": {"bytes": img0, "path": f"{i0}.png"},
                "image_1": {"bytes": img1, "path": f"{i1}.png"},
                "label_0": label,
            }
        )
    return rows


def write_pairs_dataset(folder: Path, splits: dict[str, list[dict]], *, drop: tuple[str, ...] = ()) -> Path:
    """Write ``splits`` (name -> rows) as a dataset folder with config ``pairs``; ``drop`` leaves columns
    out (for tests of bad input)."""
    import datasets

    features = datasets.Features(
        {
            "pair_id": datasets.Value("string"),
            "prompt_id": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "aspect": datasets.Value("string"),
            "image_id_0": datasets.Value("string"),
            "image_id_1": datasets.Value("string"),
            "image_0": datasets.Image(),
            "image_1": datasets.Image(),
            "label_0": datasets.Value("float32"),
        }
    )
    features = datasets.Features({k: v for k, v in features.items() if k not in drop})
    folder = Path(folder)
    (folder / "data" / "pairs").mkdir(parents=True, exist_ok=True)
    files = []
    for split, rows in splits.items():
        cols = {k: [r[k] for r in rows] for k in features}
        ds = datasets.Dataset.from_dict(cols, features=features)
        ds.to_parquet(str(folder / "data" / "pairs" / f"{split}-00000-of-00001.parquet"))
        files.append(f"  - split: {split}\n    path: data/pairs/{split}-*.parquet")
    card = (
        "---\nconfigs:\n- config_name: pairs\n  data_files:\n"
        + "\n".join(files)
        + "\n---\n\nSynthetic pairs.\n"
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder
