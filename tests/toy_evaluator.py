"""A toy evaluator added through the registry alone: this one module plus :func:`register`.

``visionprefer eval brightness --images DIR --out DIR [--submission FILE --model-info JSON]`` scores every
``*.png`` of a folder by its mean brightness (RGB / 255, in [0, 1]); its leaderboard benchmark
``brightness`` ranks models by the mean over images. Nothing else in the package knows about it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionprefer.errors import ConfigError
from visionprefer.evaluate import registry
from visionprefer.leaderboard.fields import RATE_TOLERANCE, Problem, field, num
from visionprefer.leaderboard.table import Row, Table, evaluators_text, fmt, model_cells

NAME = "brightness"
FORMULA = "mean of RGB / 255"


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--images", required=True, metavar="DIR", help="*.png files to score")
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.add_argument("--submission", metavar="FILE", help="also write a leaderboard submission")
    sp.add_argument("--model-info", metavar="JSON", help="the model's description, for --submission")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    files = sorted(Path(args.images).glob("*.png"))
    if not files:
        raise ConfigError(f"eval {NAME}: no *.png in {args.images}")
    items = []
    for f in files:
        with Image.open(f) as im:
            items.append({"image": f.name, "brightness": float(np.asarray(im.convert("RGB")).mean() / 255)})
    values = [r["brightness"] for r in items]
    summary = {
        "benchmark": NAME,
        "n_images": len(items),
        "mean_brightness": sum(values) / len(values),
        "darkest": min(values),
        "model": json.loads(Path(args.model_info).read_text()) if args.model_info else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "brightness_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (out / "brightness_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    return [f"brightness: mean {summary['mean_brightness']:.4f} over {summary['n_images']} images"]


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    return {
        NAME: {
            "metric_version": "v1",
            "evaluators": {"formula": FORMULA},
            "n": s["n_images"],
            "summary": {"mean_brightness": s["mean_brightness"], "darkest": s["darkest"]},
            "results": str(out / "brightness_items.jsonl"),
        }
    }


#: The entry's JSON Schema; it reuses the submission schema's common entry fields (``#/$defs/entry``).
SCHEMA = {
    "$ref": "#/$defs/entry",
    "additionalProperties": False,
    "properties": {
        "metric_version": {"const": "v1"},
        "evaluators": {
            "type": "object",
            "required": ["formula"],
            "additionalProperties": False,
            "properties": {"formula": {"$ref": "#/$defs/text"}},
        },
        "n": True,
        "results": True,
        "summary": {
            "type": "object",
            "required": ["mean_brightness", "darkest"],
            "additionalProperties": False,
            "properties": {"mean_brightness": {"$ref": "#/$defs/rate"}, "darkest": {"$ref": "#/$defs/rate"}},
        },
    },
}


def check(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: the darkest image is not brighter than the mean."""
    s = entry["summary"]
    if s["darkest"] > s["mean_brightness"] + RATE_TOLERANCE:
        return [
            (
                field((*prefix, "summary", "darkest")),
                f"{num(s['darkest'])} is above the mean {num(s['mean_brightness'])}",
            )
        ]
    return []


def rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    s = entry["summary"]
    key = (NAME, entry["metric_version"], tuple(sorted(entry["evaluators"].items())))

    def table() -> Table:
        return Table(f"Brightness: {metric}", f"{evaluators_text(entry)}.", metric, 3, ["darkest"])

    model, settings = model_cells(data)
    row = Row(name, model, settings, s[metric], None, entry["n"], {"darkest": fmt(s["darkest"], 3)})
    return [(key, table, row)]


EVALUATOR = registry.Evaluator(
    name=NAME,
    help="toy: mean brightness of a folder of images",
    add_arguments=add_arguments,
    run=run,
    summary_file="brightness_summary.json",
    summary_fields=("benchmark", "n_images", "mean_brightness", "darkest", "model"),
    report=report,
    benchmarks=(
        registry.Benchmark(
            name=NAME,
            title="Brightness",
            metrics=("mean_brightness",),
            check=check,
            rows=rows,
            schema=SCHEMA,
        ),
    ),
    entries=entries,
)


def register() -> registry.Evaluator:
    return registry.register(EVALUATOR)


def unregister() -> None:
    registry.unregister(NAME)
