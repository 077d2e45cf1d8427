"""Leaderboard submissions: the file format ``visionprefer.submission/1``, its validation, and building one.

A submission is one JSON file describing one model configuration and its benchmark results. It has four
parts:

``schema``
    Always ``"visionprefer.submission/1"``. A change that would make an old reader misread a file gets a new
    number; unknown keys are errors, so additions also get a new number.
``model``
    How the images were made: ``id`` (Hub id or path), ``revision`` (commit, or null for a local folder),
    ``pipeline`` and ``scheduler`` (diffusers class names), ``steps``, ``guidance_scale``,
    ``resolution`` (``height``, ``width``), ``seeds`` (exactly one of ``values``, a list, or ``rule``, how
    each image's seed was derived) and ``dtype`` (float32, float16, bfloat16).
``environment``
    Versions of ``visionprefer``, ``python``, ``torch``, ``diffusers``, ``transformers`` and the ``device``.
``benchmarks``
    At least one of ``tifa``, ``hpsv2``, ``score``, ``winrate``, ``bradley_terry``. Every entry has
    ``metric_version``, ``evaluators`` (role -> model id), ``n`` (items measured), a benchmark-specific
    ``summary`` and ``results``: the per-item results file as a path relative to the submission's folder
    (forward slashes, inside that folder) and its sha256.

Benchmarks (what ``n`` counts, and the summary):

* ``tifa`` (``metric_version`` "v1.0"; evaluators ``vqa_model``, ``similarity_model``; ``n`` = captions):
  ``tifa_average`` (mean over captions, in [0, 1]), optional ``tifa_average_ci``, ``tifa_stdev`` (sample
  standard deviation over captions; null for a single caption), ``accuracy_by_type`` (element type ->
  accuracy; human and animal merged as ``animal/human``), ``n_captions``, ``n_questions``.
* ``hpsv2`` (``metric_version`` "v2.0" or "v2.1"; evaluator ``reward_model``; ``n`` = images):
  ``checkpoint`` (file name), ``antialias`` (the resize antialiased, as torchvision >= 0.17 does),
  ``styles`` with all of anime, concept-art, paintings, photo, each ``mean``, ``std`` (population standard
  deviation of the 80-image chunk means, as the official tool prints) and ``n_images``; ``average`` (over
  all images, 100 x cosine) and an optional ``average_ci``.
* ``score`` (``metric_version`` "v1"; evaluators ``clip``/``aesthetic``/``pickscore``, one per reported
  metric; ``n`` = images): per metric a ``mean`` and an optional ``ci``.
* ``winrate`` (``metric_version`` "v1"; evaluator ``judge`` or ``scorer``; ``n`` = judgments, summed over
  opponents): ``tie_tolerance`` (a scorer's, null for a judge) and ``opponents``, each with ``opponent``,
  ``n``, ``wins``, ``ties``, ``losses``, ``win_rate`` = (W + 0.5 T) / n with its paired ``bootstrap_ci``
  (>= 1,000 resamples), ``decisive_win_rate`` = W / (W + L) with its ``wilson_ci`` (both null when W + L = 0).
* ``bradley_terry`` (``metric_version`` "v1"; evaluator ``judge`` or ``scorer``; ``n`` = battles):
  ``model_name`` (this model's name among the ratings) and ``ratings`` (every model of the fit -> ``rating``
  and its bootstrap ``ci``).

A confidence interval is ``{"low", "high", "level", "method"}`` (method ``bootstrap-percentile``, ``wilson``,
``normal`` or ``t``), plus ``n_resamples`` for a bootstrap.

Example (``tests/data/leaderboard/sdxl/submission.json``; the numbers are illustrative)::

    {
      "schema": "visionprefer.submission/1",
      "created": "2025-06-01T12:00:00+00:00",
      "model": {
        "id": "stabilityai/stable-diffusion-xl-base-1.0",
        "revision": "462165984030d82259a11f4367a4eed129e94a7b",
        "pipeline": "StableDiffusionXLPipeline",
        "scheduler": "EulerDiscreteScheduler",
        "steps": 30,
        "guidance_scale": 7.5,
        "resolution": {"height": 1024, "width": 1024},
        "seeds": {"rule": "derive_seed(0, relative path, 0)"},
        "dtype": "float16"
      },
      "environment": {
        "visionprefer": "0.1.0",
        "python": "3.11.9",
        "torch": "2.13.0",
        "diffusers": "0.42.0",
        "transformers": "5.1.0",
        "device": "cuda (NVIDIA A100-SXM4-80GB)"
      },
      "benchmarks": {
        "tifa": {
          "metric_version": "v1.0",
          "evaluators": {
            "vqa_model": "Salesforce/blip2-flan-t5-xl",
            "similarity_model": "sentence-transformers/all-mpnet-base-v2"
          },
          "n": 4081,
          "summary": {
            "tifa_average": 0.8069,
            "tifa_stdev": 0.2113,
            "accuracy_by_type": {"animal/human": 0.85, "color": 0.86, "counting": 0.61, "object": 0.87},
            "n_captions": 4081,
            "n_questions": 25829
          },
          "results": {
            "path": "results/tifa_items.jsonl",
            "sha256": "374014ace602a5d43427f5ab7ad5d57e48297bf023fb52e235216dff621292f7"
          }
        },
        "hpsv2": {
          "metric_version": "v2.1",
          "evaluators": {"reward_model": "xswu/HPSv2"},
          "n": 3200,
          "summary": {
            "checkpoint": "HPS_v2.1_compressed.pt",
            "antialias": true,
            "styles": {
              "anime": {"mean": 32.84, "std": 0.41, "n_images": 800},
              "concept-art": {"mean": 31.36, "std": 0.35, "n_images": 800},
              "paintings": {"mean": 30.86, "std": 0.38, "n_images": 800},
              "photo": {"mean": 27.48, "std": 0.52, "n_images": 800}
            },
            "average": 30.635
          },
          "results": {
            "path": "results/hpsv2_items.jsonl",
            "sha256": "4a96557aff07e312cf35be720b12b8ca91539a449b9b4c92e606ce295a2d363a"
          }
        },
        "score": {
          "metric_version": "v1",
          "evaluators": {
            "clip": "openai/clip-vit-large-patch14",
            "aesthetic": "laion-aesthetic-v2",
            "pickscore": "yuvalkirstain/PickScore_v1"
          },
          "n": 1632,
          "summary": {
            "clip": {
              "mean": 26.71,
              "ci": {"low": 26.52, "high": 26.9, "level": 0.95, "method": "bootstrap-percentile", "n_resamples": 1000}
            },
            "aesthetic": {"mean": 6.102},
            "pickscore": {"mean": 22.35}
          },
          "results": {
            "path": "results/score_items.jsonl",
            "sha256": "8b0fa309985147580e8ad251f662e5dd2facf9c53d2b4f0b3ab92a171de01a76"
          }
        },
        "winrate": {
          "metric_version": "v1",
          "evaluators": {"judge": "gpt-4o-2024-08-06"},
          "n": 200,
          "summary": {
            "tie_tolerance": null,
            "opponents": [
              {
                "opponent": "stabilityai/stable-diffusion-2-1",
                "n": 200,
                "wins": 112,
                "ties": 31,
                "losses": 57,
                "win_rate": 0.6375,
                "bootstrap_ci": {
                  "low": 0.585, "high": 0.6875, "level": 0.95, "method": "bootstrap-percentile", "n_resamples": 1000
                },
                "decisive_win_rate": 0.6627,
                "wilson_ci": {"low": 0.5885, "high": 0.7297, "level": 0.95, "method": "wilson"}
              }
            ]
          },
          "results": {
            "path": "results/winrate_items.jsonl",
            "sha256": "e37d53d2e14e4350f2e02c57e18f9adb69e2bc10fec18f16e22f1960d3010ff3"
          }
        },
        "bradley_terry": {
          "metric_version": "v1",
          "evaluators": {"judge": "gpt-4o-2024-08-06"},
          "n": 600,
          "summary": {
            "model_name": "sdxl",
            "ratings": {
              "sdxl": {
                "rating": 1068.4,
                "ci": {"low": 1049.1, "high": 1089.0, "level": 0.95, "method": "bootstrap-percentile", "n_resamples": 1000}
              },
              "sd21": {
                "rating": 981.2,
                "ci": {"low": 962.3, "high": 1000.8, "level": 0.95, "method": "bootstrap-percentile", "n_resamples": 1000}
              },
              "sd15": {
                "rating": 950.4,
                "ci": {"low": 930.2, "high": 969.9, "level": 0.95, "method": "bootstrap-percentile", "n_resamples": 1000}
              }
            }
          },
          "results": {
            "path": "results/winrate_items.jsonl",
            "sha256": "e37d53d2e14e4350f2e02c57e18f9adb69e2bc10fec18f16e22f1960d3010ff3"
          }
        }
      }
    }

Validation. The structure (keys, types, ranges, versions) is the JSON Schema ``submission.schema.json`` beside
this module, checked with ``jsonschema``. On top of it :func:`validate_submission` rejects contradictions:

* JSON: a repeated key in an object, NaN or Infinity.
* ``created`` that is not an ISO 8601 date-time with a UTC offset; a resolution side not divisible by 8;
  ``seeds`` with both or neither of ``values`` and ``rule``.
* Any CI with ``low`` > ``high``, a bootstrap CI without ``n_resamples``, or a CI that does not contain its
  estimate (allowing the estimate's rounding tolerance below).
* tifa: ``n`` != ``n_captions``; fewer questions than captions; more than TIFA v1.0's 4,081 captions or
  25,829 questions; ``tifa_stdev`` null with two or more captions, or a number with one; separate
  ``human``/``animal`` types.
* hpsv2: a checkpoint file name naming the other HPS version (``HPS_v2_...`` is v2.0, ``HPS_v2.1_...`` is
  v2.1); ``n`` != the sum of the styles' ``n_images``; ``average`` farther than 0.01 from the mean of the
  style means weighted by ``n_images`` (0.01 allows every number to be rounded to two decimals).
* score: a metric without its evaluator model id, or an evaluator without its metric.
* winrate: not exactly one of ``judge``/``scorer``; a scorer without ``tie_tolerance``, a judge with one;
  per opponent wins + ties + losses != ``n``; ``win_rate`` != (W + 0.5 T) / n, ``decisive_win_rate`` !=
  W / (W + L), ``wilson_ci`` != the Wilson interval of W in W + L at its level (each within 0.0005, so
  three-decimal rounding passes); a decisive rate or Wilson CI that is not null when W + L = 0; an opponent
  listed twice; the entry's ``n`` != the sum of the opponents' ``n``.
* bradley_terry: not exactly one of ``judge``/``scorer``; ``model_name`` not among the ratings; ratings whose
  mean is not 1000 within 0.5. The L2-regularised fit without intercept (GenAI-Arena's definition, which
  ``eval winrate`` uses) gives coefficients that sum to zero, so ratings = 400 coef + 1000 average exactly
  1000 over all models of the fit: a different mean means a model was left out or the ratings were shifted.
* results: a path that is absolute, uses backslashes or ``..``; and, when a base folder is known, a file that
  is missing or whose sha256 differs.

Every problem is reported as ``<field>: <what is wrong>`` where the field is a JSON path such as
``benchmarks.hpsv2.styles.anime.mean`` or ``benchmarks.winrate.summary.opponents[0].wins``.
"""

from __future__ import annotations

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
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import VisionPreferError

SCHEMA_ID = "visionprefer.submission/1"
SCHEMA_FILE = Path(__file__).with_name("submission.schema.json")
BENCHMARKS = ("tifa", "hpsv2", "score", "winrate", "bradley_terry")
HPS_STYLES = ("anime", "concept-art", "paintings", "photo")

#: Values computed from integer counts (win rates) may be rounded to three decimals.
RATE_TOLERANCE = 5e-4
#: HPS averages on the 100 x cosine scale may be rounded to two decimals, as are their inputs.
SCORE_TOLERANCE = 0.01
#: Bradley-Terry ratings may be rounded to whole points.
RATING_TOLERANCE = 0.5
TIFA_V1_CAPTIONS = 4081
TIFA_V1_QUESTIONS = 25829

Path_ = str | os.PathLike[str]
Problem = tuple[str | None, str]


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
        return [("", f"must be a JSON object, got {_json_type(data)}")]
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


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(submission_schema())


def _schema_problems(data: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for error in _validator().iter_errors(data):
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
        return [(field, f"must be {' or '.join(_JSON_TYPES[t] for t in types)}, got {_show(value)}")]
    if kind == "const":
        return [(field, f"must be {json.dumps(expected)}, got {_show(value)}")]
    if kind == "enum":
        return [(field, f"must be one of {', '.join(json.dumps(v) for v in expected)}; got {_show(value)}")]
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [(field, f"must be {bounds[kind]} {expected}, got {_num(value)}")]
    if kind == "minLength":
        return [(field, "must not be empty")]
    if kind in ("minItems", "minProperties"):
        unit = "item" if kind == "minItems" else "entry"
        return [(field, f"needs at least {expected} {unit}{'' if expected == 1 else 's'}, got {len(value)}")]
    if kind == "pattern":
        return [(field, f"must be {schema.get('description') or 'match ' + expected}, got {_show(value)}")]
    return [(field, error.message)]


# ------------------------------------------------------------------------------------------- contradictions


def _contradictions(data: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if "created" in data:
        out += _check_created(data["created"])
    out += _check_model(data["model"])
    checks = {
        "tifa": _check_tifa,
        "hpsv2": _check_hpsv2,
        "score": _check_score,
        "winrate": _check_winrate,
        "bradley_terry": _check_bradley_terry,
    }
    for name, entry in data["benchmarks"].items():
        prefix = ("benchmarks", name)
        out += _check_results_path(prefix, entry["results"]["path"])
        out += checks[name](prefix, entry)
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


def _check_ci(
    field: tuple[Any, ...], ci: Mapping[str, Any], estimate: float, name: str, tol: float
) -> list[Problem]:
    out: list[Problem] = []
    low, high = ci["low"], ci["high"]
    if ci["method"].startswith("bootstrap") and "n_resamples" not in ci:
        out.append(
            (_field((*field, "n_resamples")), "missing: a bootstrap CI states its number of resamples")
        )
    if low > high:
        out.append((_field((*field, "low")), f"{_num(low)} is above high {_num(high)}"))
    elif not low - tol <= estimate <= high + tol:
        out.append(
            (
                _field(field),
                f"[{_num(low)}, {_num(high)}] does not contain its estimate {name} = {_num(estimate)}",
            )
        )
    return out


def _check_tifa(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    s = entry["summary"]
    at = lambda *keys: _field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    n_captions, n_questions = s["n_captions"], s["n_questions"]
    if entry["n"] != n_captions:
        out.append(
            (
                at("n"),
                f"{entry['n']} differs from summary.n_captions = {n_captions} (tifa's n counts captions)",
            )
        )
    if n_questions < n_captions:
        out.append(
            (
                at("summary", "n_questions"),
                f"{n_questions} questions for {n_captions} captions: every caption has at least one",
            )
        )
    if n_captions > TIFA_V1_CAPTIONS:
        out.append(
            (
                at("summary", "n_captions"),
                f"{n_captions} is more than TIFA v1.0's {TIFA_V1_CAPTIONS} captions",
            )
        )
    if n_questions > TIFA_V1_QUESTIONS:
        out.append(
            (
                at("summary", "n_questions"),
                f"{n_questions} is more than TIFA v1.0's {TIFA_V1_QUESTIONS} questions",
            )
        )
    if s["tifa_stdev"] is None and n_captions >= 2:
        out.append(
            (
                at("summary", "tifa_stdev"),
                f"must be a number: the sample standard deviation of {n_captions} captions exists",
            )
        )
    if s["tifa_stdev"] is not None and n_captions == 1:
        out.append(
            (
                at("summary", "tifa_stdev"),
                "must be null: the sample standard deviation of one caption is undefined",
            )
        )
    for key in ("human", "animal"):
        if key in s["accuracy_by_type"]:
            out.append(
                (
                    at("summary", "accuracy_by_type", key),
                    'TIFA merges human and animal questions as "animal/human"',
                )
            )
    if "tifa_average_ci" in s:
        out += _check_ci(
            (*prefix, "summary", "tifa_average_ci"),
            s["tifa_average_ci"],
            s["tifa_average"],
            "tifa_average",
            RATE_TOLERANCE,
        )
    return out


def hps_checkpoint_version(checkpoint: str) -> str | None:
    """The HPS version a checkpoint file name names (``HPS_v2_compressed.pt`` -> "v2.0"), or None."""
    match = re.search(r"HPS_v(2(?:\.\d+)?)", PurePosixPath(checkpoint.replace("\\", "/")).name, re.IGNORECASE)
    if match is None:
        return None
    number = match.group(1)
    return "v2.0" if number == "2" else f"v{number}"


def _check_hpsv2(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    s = entry["summary"]
    at = lambda *keys: _field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    version = entry["metric_version"]
    named = hps_checkpoint_version(s["checkpoint"])
    if named is not None and named != version:
        out.append(
            (
                at("summary", "checkpoint"),
                f"{s['checkpoint']!r} is the HPS {named} checkpoint but metric_version is {version!r}",
            )
        )
    styles = s["styles"]
    n_images = sum(styles[k]["n_images"] for k in HPS_STYLES)
    if entry["n"] != n_images:
        out.append((at("n"), f"{entry['n']} differs from the {n_images} images summed over the styles"))
    expected = sum(styles[k]["mean"] * styles[k]["n_images"] for k in HPS_STYLES) / n_images
    if abs(s["average"] - expected) > SCORE_TOLERANCE + 1e-9:
        out.append(
            (
                at("summary", "average"),
                f"{_num(s['average'])} is not the mean over the styles, {expected:.4f} "
                f"(weighted by n_images; tolerance {SCORE_TOLERANCE})",
            )
        )
    if "average_ci" in s:
        out += _check_ci(
            (*prefix, "summary", "average_ci"), s["average_ci"], s["average"], "average", SCORE_TOLERANCE
        )
    return out


def _check_score(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    s, evaluators = entry["summary"], entry["evaluators"]
    at = lambda *keys: _field((*prefix, *keys))  # noqa: E731
    out: list[Problem] = []
    for metric in s:
        if metric not in evaluators:
            out.append(
                (at("evaluators", metric), f"missing: the summary reports {metric}, so name its model")
            )
    for metric in evaluators:
        if metric not in s:
            out.append(
                (
                    at("summary", metric),
                    f"missing: evaluators name a {metric} model but there is no {metric} result",
                )
            )
    for metric, value in s.items():
        if "ci" in value:
            out += _check_ci(
                (*prefix, "summary", metric, "ci"), value["ci"], value["mean"], "mean", SCORE_TOLERANCE
            )
    return out


def _check_judge_or_scorer(prefix: tuple[Any, ...], evaluators: Mapping[str, Any]) -> list[Problem]:
    if ("judge" in evaluators) == ("scorer" in evaluators):
        return [
            (
                _field((*prefix, "evaluators")),
                'give exactly one of "judge" (the VLM judge\'s model id) or "scorer" (the reward model id)',
            )
        ]
    return []


def _check_winrate(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    from ..evaluate.stats import wilson_interval

    s = entry["summary"]
    at = lambda *keys: _field((*prefix, *keys))  # noqa: E731
    out = _check_judge_or_scorer(prefix, entry["evaluators"])
    tolerance = s.get("tie_tolerance")
    if "scorer" in entry["evaluators"] and tolerance is None:
        out.append(
            (at("summary", "tie_tolerance"), "missing: a scorer's win rates depend on its tie tolerance")
        )
    if "judge" in entry["evaluators"] and tolerance is not None:
        out.append(
            (
                at("summary", "tie_tolerance"),
                "must be null for a judge (its ties are disagreements between orders)",
            )
        )
    seen: set[str] = set()
    for i, o in enumerate(s["opponents"]):
        here = ("summary", "opponents", i)
        w, t, lo, n = o["wins"], o["ties"], o["losses"], o["n"]
        if o["opponent"] in seen:
            out.append((at(*here, "opponent"), f"{o['opponent']!r} is listed twice"))
        seen.add(o["opponent"])
        if w + t + lo != n:
            out.append((at(*here, "n"), f"wins + ties + losses = {w + t + lo}, not n = {n}"))
        expected = (w + 0.5 * t) / n
        if abs(o["win_rate"] - expected) > RATE_TOLERANCE:
            out.append(
                (
                    at(*here, "win_rate"),
                    f"{_num(o['win_rate'])} is not (wins + 0.5 ties) / n = {expected:.4f}",
                )
            )
        out += _check_ci(
            (*prefix, *here, "bootstrap_ci"), o["bootstrap_ci"], o["win_rate"], "win_rate", RATE_TOLERANCE
        )
        decisive = w + lo
        if decisive == 0:
            for key in ("decisive_win_rate", "wilson_ci"):
                if o[key] is not None:
                    out.append(
                        (at(*here, key), "must be null: there are no decisive outcomes (wins + losses = 0)")
                    )
            continue
        rate, ci = o["decisive_win_rate"], o["wilson_ci"]
        if rate is None:
            out.append(
                (
                    at(*here, "decisive_win_rate"),
                    f"must be wins / (wins + losses) = {w / decisive:.4f}, got null",
                )
            )
        elif abs(rate - w / decisive) > RATE_TOLERANCE:
            out.append(
                (
                    at(*here, "decisive_win_rate"),
                    f"{_num(rate)} is not wins / (wins + losses) = {w / decisive:.4f}",
                )
            )
        if ci is None:
            out.append(
                (at(*here, "wilson_ci"), "must be the Wilson interval of wins / (wins + losses), got null")
            )
            continue
        low, high = wilson_interval(w, decisive, ci["level"])  # type: ignore[misc]
        for key, value in (("low", low), ("high", high)):
            if abs(ci[key] - value) > RATE_TOLERANCE:
                out.append(
                    (
                        at(*here, "wilson_ci", key),
                        f"{_num(ci[key])} is not the {ci['level']:g} Wilson bound "
                        f"for {w} wins in {decisive} decisive outcomes, {value:.4f}",
                    )
                )
    total = sum(o["n"] for o in s["opponents"])
    if entry["n"] != total:
        out.append((at("n"), f"{entry['n']} differs from the {total} judgments summed over the opponents"))
    return out


def _check_bradley_terry(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    s = entry["summary"]
    at = lambda *keys: _field((*prefix, *keys))  # noqa: E731
    out = _check_judge_or_scorer(prefix, entry["evaluators"])
    ratings = s["ratings"]
    if s["model_name"] not in ratings:
        out.append(
            (
                at("summary", "model_name"),
                f"{s['model_name']!r} is not among the rated models ({', '.join(ratings)})",
            )
        )
    for name, r in ratings.items():
        out += _check_ci(
            (*prefix, "summary", "ratings", name, "ci"), r["ci"], r["rating"], "rating", RATING_TOLERANCE
        )
    mean = sum(r["rating"] for r in ratings.values()) / len(ratings)
    if abs(mean - 1000) > RATING_TOLERANCE:
        out.append(
            (
                at("summary", "ratings"),
                f"the ratings average {mean:.2f}, not 1000: the fit centres every model "
                "it rates on 1000, so a model is missing or the ratings were shifted",
            )
        )
    return out


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
        "bootstrap_ci": _interval(s["bootstrap_ci"], level, "bootstrap-percentile", s["n_bootstrap"]),
        "decisive_win_rate": s["decisive_win_rate"],
        "wilson_ci": _interval(s["wilson_ci"], level, "wilson"),
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
            "ci": _interval(bounds, confidence, "bootstrap-percentile", n_bootstrap),
        }
    return out


def _interval(
    bounds: Any, level: float, method: str, n_resamples: int | None = None
) -> dict[str, Any] | None:
    if bounds is None:
        return None
    ci: dict[str, Any] = {"low": float(bounds[0]), "high": float(bounds[1]), "level": level, "method": method}
    if n_resamples is not None:
        ci["n_resamples"] = n_resamples
    return ci


def build_submission(
    model: Mapping[str, Any],
    benchmarks: Mapping[str, Mapping[str, Any]],
    results_dir: Path_,
    *,
    device: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """A validated submission for files that will sit in ``results_dir`` (the submission's folder).

    ``model`` is the description :func:`visionprefer.evaluate.images.generate_images` returns (flat
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
    submission = {
        "schema": SCHEMA_ID,
        "created": created or datetime.now(UTC).replace(microsecond=0).isoformat(),
        "model": _normalise_model(model),
        "environment": environment_info(device),
        "benchmarks": out_benchmarks,
    }
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


# ------------------------------------------------------------------------------------------------- helpers

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _field(path: Iterable[Any]) -> str:
    """A JSON path for messages: ``benchmarks.hpsv2.styles.anime.mean``, ``opponents[0]``,
    ``accuracy_by_type["animal/human"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return _json_type(value)
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_json_type(value)} {text}" if value is not None else "null"


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
