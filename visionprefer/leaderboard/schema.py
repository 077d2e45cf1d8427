"""Leaderboard submissions: the file format ``visionprefer.submission/1``, its validation, and building one.

A submission is one JSON file describing one model configuration (``model``: how the images were made;
``environment``: package versions and device) and its benchmark results (``benchmarks``: one entry per
leaderboard benchmark, each with ``metric_version``, ``evaluators``, ``n``, a ``summary`` and the per-item
``results`` file with its sha256). A submission whose benchmarks are all ``agreement/<testset>`` ones (a
scorer's or judge's agreement with a human test set; see :mod:`visionprefer.evaluate.specs.agreement`)
describes no images, so it has no ``model`` (:func:`model_required`). ``schema`` is always
``"visionprefer.submission/1"``: a change that would make an old reader misread a file gets a new number;
unknown keys are errors, so additions also get one.

The format is defined in one place, the JSON Schema (draft 2020-12) ``submission.schema.json`` beside this
module (:func:`submission_schema`; every key, type, range and version is there). A complete example is
``tests/data/leaderboard/sdxl/submission.json``. Benchmarks that an evaluator registers at run time
(:mod:`visionprefer.evaluate.registry`) add their entry's schema to it (:func:`effective_schema`).

Validation (:func:`validate_submission`, :func:`submission_problems`):

1. JSON itself: a repeated key in an object, NaN or Infinity (which JSON Schema cannot see).
2. The JSON Schema, checked with ``jsonschema``.
3. What the schema cannot express: ``created`` that is not an ISO 8601 date-time with a UTC offset; a
   resolution side not divisible by 8; ``seeds`` with both or neither of ``values`` and ``rule``; a
   results path that is absolute, uses backslashes or ``..``; and each benchmark's own checks, its registry
   entry's ``check`` (counts that do not add up, rates and intervals that do not follow from the counts,
   intervals that do not contain their estimate, versions that contradict each other; each check's
   docstring lists what it rejects, e.g. :func:`visionprefer.evaluate.specs.winrate.check_winrate`).
4. When a base folder is known: a results file that is missing or whose sha256 differs.

Every problem is reported as ``<field>: <what is wrong>`` where the field is a JSON path such as
``benchmarks.hpsv2.styles.anime.mean`` or ``benchmarks.winrate.summary.opponents[0].wins``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import VisionPreferError
from .fields import Problem, json_type, num, show
from .fields import field as _field

SCHEMA_ID = "visionprefer.submission/1"
SCHEMA_FILE = Path(__file__).with_name("submission.schema.json")

Path_ = str | os.PathLike[str]


class SubmissionError(VisionPreferError, ValueError):
    """A submission file that is malformed, incomplete or contradicts itself.

    ``problems`` lists every ``(field, message)`` found (``field`` is a JSON path, or None for the file as a
    whole); the exception's message is the first one on one line, with the count of the others.
    """

    def __init__(
        self, problems: list[Problem], file: str | None = None, *, message: str | None = None
    ) -> None:
        self.problems = list(problems)
        self.file = file
        self.field = problems[0][0]
        if message is None:
            first = _format_problem(problems[0])
            more = len(problems) - 1
            suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
            message = f"{file}: {first}{suffix}" if file else f"{first}{suffix}"
        super().__init__(message)


def _format_problem(problem: Problem) -> str:
    field, what = problem
    return what if field is None else f"{field or '(root)'}: {what}"


# --------------------------------------------------------------------------------------------------- loading


class _StrictObject(dict):
    """A JSON object that remembers the keys it saw twice (``json`` would silently keep the last one)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _StrictObject:
    obj = _StrictObject(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        obj.duplicates = tuple(k for i, k in enumerate(keys) if k in keys[:i])
    return obj


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a Windows editor is not a problem
    except FileNotFoundError:
        raise SubmissionError([(None, "no such file")], file=str(path)) from None
    except UnicodeDecodeError:
        raise SubmissionError([(None, "not UTF-8 text")], file=str(path)) from None
    except OSError as e:
        raise SubmissionError([(None, f"cannot read: {e.strerror or e}")], file=str(path)) from None
    try:
        return json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as e:
        raise SubmissionError(
            [(None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")], file=str(path)
        ) from None


def load_submission(path: Path_, *, base_dir: Path_ | None = None) -> dict[str, Any]:
    """Read and validate a submission file; returns its content. Results files are checked against
    ``base_dir`` (default: the file's folder)."""
    path = Path(path)
    data = _read_json(path)
    problems = submission_problems(data, base_dir=path.parent if base_dir is None else base_dir)
    if problems:
        raise SubmissionError(problems, file=str(path))
    return data


def validate_submission(data_or_path: Mapping[str, Any] | Path_, *, base_dir: Path_ | None = None) -> None:
    """Raise :class:`SubmissionError` naming the first problem of a submission (a dict or a file path).

    The per-item results files are checked (present, sha256 equal) against ``base_dir``; for a file path it
    defaults to the file's folder, for a dict they are checked only when ``base_dir`` is given.
    """
    if isinstance(data_or_path, Mapping):
        problems = submission_problems(data_or_path, base_dir=base_dir)
        if problems:
            raise SubmissionError(problems)
        return
    load_submission(data_or_path, base_dir=base_dir)


# ---------------------------------------------------------------------------------------------- validation


def submission_problems(data: Any, *, base_dir: Path_ | None = None) -> list[Problem]:
    """Every problem of a submission as ``(field, message)``, in a stable order; empty when it is valid."""
    if not isinstance(data, Mapping):
        return [("", f"must be a JSON object, got {json_type(data)}")]
    version = _schema_version_problem(data.get("schema", None), "schema" in data)
    if version:
        return [version]
    problems = _json_problems(data, ())
    problems += _schema_problems(data)
    if problems:
        return _unique(problems)
    problems = _contradictions(data)
    if not problems and base_dir is not None:
        problems = _results_file_problems(data, Path(base_dir))
    return _unique(problems)


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    out: list[Problem] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def _schema_version_problem(value: Any, present: bool) -> Problem | None:
    if not present:
        return ("schema", f'missing; a submission starts with "schema": "{SCHEMA_ID}"')
    if value == SCHEMA_ID:
        return None
    if isinstance(value, str) and value.startswith("visionprefer.submission/"):
        found = value.removeprefix("visionprefer.submission/")
        return ("schema", f"unknown format version {found!r}: this visionprefer reads {SCHEMA_ID!r}")
    return ("schema", f"{value!r} is not a visionprefer submission (expected {SCHEMA_ID!r})")


def _json_problems(value: Any, path: tuple[Any, ...]) -> list[Problem]:
    """Repeated keys and non-finite numbers, which JSON Schema cannot see."""
    out: list[Problem] = []
    if isinstance(value, Mapping):
        for key in getattr(value, "duplicates", ()):
            out.append((_field((*path, key)), "key appears more than once in its object"))
        for key, item in value.items():
            out += _json_problems(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _json_problems(item, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        out.append((_field(path), f"must be a finite number, got {value}"))
    return out


@cache
def submission_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the submission structure."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def effective_schema() -> dict[str, Any]:
    """The JSON Schema submissions are validated with: :func:`submission_schema`, plus the entry schema of
    every registered benchmark the file does not define (:class:`visionprefer.evaluate.registry.Benchmark`
    ``schema``). The built-in benchmarks are all defined in the file."""
    from ..evaluate.registry import benchmarks

    schema = copy.deepcopy(submission_schema())
    defined = schema["properties"]["benchmarks"]["properties"]
    for name, bench in benchmarks().items():
        if bench.schema is not None:
            if name in defined:
                raise ValueError(f"benchmark {name!r} is defined in {SCHEMA_FILE.name}; give it no schema")
            defined[name] = copy.deepcopy(dict(bench.schema))
        elif name not in defined:
            raise ValueError(
                f"benchmark {name!r} has no schema: give one, or define it in {SCHEMA_FILE.name}"
            )
    return schema


@lru_cache(maxsize=4)
def _validator(registry_version: int) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(effective_schema())


def _schema_problems(data: Mapping[str, Any]) -> list[Problem]:
    from ..evaluate.registry import version

    out: list[Problem] = []
    for error in _validator(version()).iter_errors(data):
        out += _describe_schema_error(error)
    return out


_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _describe_schema_error(error: Any) -> list[Problem]:
    path = tuple(error.absolute_path)
    kind, expected, value, schema = error.validator, error.validator_value, error.instance, error.schema
    if kind == "required":
        return [(_field((*path, k)), "missing (required)") for k in expected if k not in value]
    if kind == "additionalProperties" and expected is False:
        known = list(schema.get("properties", {}))
        return [
            (_field((*path, k)), f"unknown key; valid keys here: {', '.join(known)}")
            for k in value
            if k not in known
        ]
    field = _field(path)
    if kind == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return [(field, f"must be {' or '.join(_JSON_TYPES[t] for t in types)}, got {show(value)}")]
    if kind == "const":
        return [(field, f"must be {json.dumps(expected)}, got {show(value)}")]
    if kind == "enum":
        return [(field, f"must be one of {', '.join(json.dumps(v) for v in expected)}; got {show(value)}")]
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [(field, f"must be {bounds[kind]} {expected}, got {num(value)}")]
    if kind == "minLength":
        return [(field, "must not be empty")]
    if kind in ("minItems", "minProperties"):
        unit = "item" if kind == "minItems" else "entry"
        return [(field, f"needs at least {expected} {unit}{'' if expected == 1 else 's'}, got {len(value)}")]
    if kind == "pattern":
        return [(field, f"must be {schema.get('description') or 'match ' + expected}, got {show(value)}")]
    return [(field, error.message)]


# ------------------------------------------------------------------------------------------- contradictions


def _contradictions(data: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if "created" in data:
        out += _check_created(data["created"])
    if "model" in data:
        out += _check_model(data["model"])
    from ..evaluate.registry import benchmarks

    known = benchmarks()
    for name, entry in data["benchmarks"].items():
        prefix = ("benchmarks", name)
        out += _check_results_path(prefix, entry["results"]["path"])
        out += known[name].check(prefix, entry)
    return out


def _check_created(value: str) -> list[Problem]:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return [("created", f"{value!r} is not an ISO 8601 date-time")]
    if stamp.tzinfo is None:
        return [("created", f"{value!r} needs a UTC offset, e.g. {value}+00:00")]
    return []


def _check_model(model: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for side in ("height", "width"):
        size = model["resolution"][side]
        if size % 8:
            out.append(
                (
                    f"model.resolution.{side}",
                    f"{size} is not divisible by 8, which diffusers pipelines require",
                )
            )
    if ("values" in model["seeds"]) == ("rule" in model["seeds"]):
        out.append(
            ("model.seeds", 'give exactly one of "values" (the seeds used) or "rule" (how they were derived)')
        )
    return out


def _check_results_path(prefix: tuple[Any, ...], path: str) -> list[Problem]:
    pure = PurePosixPath(path)
    if "\\" in path or pure.is_absolute() or re.match(r"^[A-Za-z]:", path) or ".." in pure.parts:
        return [
            (
                _field((*prefix, "results", "path")),
                f"{path!r} must be a relative path inside the submission's folder (forward slashes, no '..')",
            )
        ]
    return []


def _results_file_problems(data: Mapping[str, Any], base_dir: Path) -> list[Problem]:
    out: list[Problem] = []
    for name, entry in data["benchmarks"].items():
        rel, expected = entry["results"]["path"], entry["results"]["sha256"]
        file = base_dir / rel
        if not file.is_file():
            out.append((f"benchmarks.{name}.results.path", f"file not found: {file}"))
            continue
        actual = file_sha256(file)
        if actual != expected:
            out.append(
                (f"benchmarks.{name}.results.sha256", f"does not match {file} (its sha256 is {actual})")
            )
    return out


def file_sha256(path: Path_) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ building


def opponent_entry(opponent: str, summary: Any) -> dict[str, Any]:
    """One ``winrate`` opponent record from :func:`visionprefer.evaluate.stats.win_rate_summary`'s result
    (the dataclass, or its JSON form as ``eval winrate`` writes it)."""
    s = summary if isinstance(summary, Mapping) else dataclasses.asdict(summary)
    level = s["confidence"]
    return {
        "opponent": opponent,
        "n": s["n"],
        "wins": s["wins"],
        "ties": s["ties"],
        "losses": s["losses"],
        "win_rate": s["win_rate"],
        "bootstrap_ci": ci_record(s["bootstrap_ci"], level, "bootstrap-percentile", s["n_bootstrap"]),
        "decisive_win_rate": s["decisive_win_rate"],
        "wilson_ci": ci_record(s["wilson_ci"], level, "wilson"),
    }


def bradley_terry_ratings(
    ratings: Mapping[str, Any], *, confidence: float, n_bootstrap: int
) -> dict[str, Any]:
    """The ``bradley_terry`` summary's ``ratings`` from :func:`visionprefer.evaluate.stats.bradley_terry`'s
    result (name -> ``ModelRating`` or its JSON form), with the confidence and resamples it was called with."""
    out = {}
    for name, r in ratings.items():
        r = r if isinstance(r, Mapping) else dataclasses.asdict(r)
        bounds = None if r["ci_low"] is None else (r["ci_low"], r["ci_high"])
        out[name] = {
            "rating": r["rating"],
            "ci": ci_record(bounds, confidence, "bootstrap-percentile", n_bootstrap),
        }
    return out


def ci_record(
    bounds: Any, level: float, method: str, n_resamples: int | None = None
) -> dict[str, Any] | None:
    """A submission's CI object from ``(low, high)`` (None stays None)."""
    if bounds is None:
        return None
    ci: dict[str, Any] = {"low": float(bounds[0]), "high": float(bounds[1]), "level": level, "method": method}
    if n_resamples is not None:
        ci["n_resamples"] = n_resamples
    return ci


def model_required(benchmark_names: Iterable[str]) -> bool:
    """Whether a submission with these benchmarks needs ``model`` (the schema file's top-level ``if``:
    agreement entries describe a scorer or judge on a fixed human test set, not images a model made)."""
    from jsonschema import Draft202012Validator

    condition = submission_schema()["if"]
    return Draft202012Validator(condition).is_valid({"benchmarks": dict.fromkeys(benchmark_names, {})})


def build_submission(
    model: Mapping[str, Any] | None,
    benchmarks: Mapping[str, Mapping[str, Any]],
    results_dir: Path_,
    *,
    device: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """A validated submission for files that will sit in ``results_dir`` (the submission's folder).

    ``model`` is None for a submission that needs none (:func:`model_required`), else the description
    :func:`visionprefer.evaluate.images.generate_images` returns (flat
    ``height``/``width`` and ``seed_rule`` are accepted and moved into ``resolution`` and ``seeds``; a list
    ``seeds`` becomes ``{"values": [...]}``; a ``torch.`` prefix is dropped from ``dtype``) or the submission
    shape itself. ``benchmarks`` maps a benchmark name to its entry, whose ``results`` may be a path (relative
    to ``results_dir``, or absolute inside it): its sha256 is computed here. ``device`` is the device the
    evaluation ran on; None asks torch which default device it sees. Raises :class:`SubmissionError` when the
    result is not a valid submission.
    """
    base = Path(results_dir)
    out_benchmarks: dict[str, Any] = {}
    for name, entry in benchmarks.items():
        entry = dict(entry)
        if "results" in entry:
            entry["results"] = _results_pointer(entry["results"], base, name)
        out_benchmarks[name] = entry
    submission: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "created": created or datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    if model is not None:
        submission["model"] = _normalise_model(model)
    submission["environment"] = environment_info(device)
    submission["benchmarks"] = out_benchmarks
    validate_submission(submission, base_dir=base)
    return submission


def write_submission(submission: Mapping[str, Any], path: Path_) -> Path:
    """Validate ``submission`` against the folder it is written to, then write it atomically."""
    from ..rundir import atomic_write_text

    path = Path(path)
    validate_submission(submission, base_dir=path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(submission, indent=2, ensure_ascii=False) + "\n")
    return path


def _results_pointer(value: Any, base: Path, name: str) -> Any:
    if isinstance(value, Mapping):
        if "sha256" in value or not isinstance(value.get("path"), str):
            return dict(value)
        value = value["path"]
    if not isinstance(value, str | os.PathLike):
        return value  # the validator names the bad type
    file = Path(value)
    if file.is_absolute():
        try:
            file = file.resolve().relative_to(base.resolve())
        except ValueError:
            raise SubmissionError(
                [(f"benchmarks.{name}.results.path", f"{value} is outside the submission's folder {base}")]
            ) from None
    if not (base / file).is_file():
        raise SubmissionError([(f"benchmarks.{name}.results.path", f"file not found: {base / file}")])
    return {"path": file.as_posix(), "sha256": file_sha256(base / file)}


def _normalise_model(model: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(model)
    if "resolution" not in out and ("height" in out or "width" in out):
        out["resolution"] = {"height": out.pop("height", None), "width": out.pop("width", None)}
    if "seed_rule" in out and "seeds" not in out:
        out["seeds"] = {"rule": out.pop("seed_rule")}
    if isinstance(out.get("seeds"), list | tuple):
        out["seeds"] = {"values": list(out["seeds"])}
    elif isinstance(out.get("seeds"), str):
        out["seeds"] = {"rule": out["seeds"]}
    if isinstance(out.get("dtype"), str):
        out["dtype"] = out["dtype"].removeprefix("torch.")
    return out


def environment_info(device: str | None = None) -> dict[str, str]:
    """Package versions and the device, as a submission records them."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    if device is None:
        device = _default_device()
    return {
        "visionprefer": version("visionprefer"),
        "python": platform.python_version(),
        "torch": version("torch"),
        "diffusers": version("diffusers"),
        "transformers": version("transformers"),
        "device": device,
    }


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"
