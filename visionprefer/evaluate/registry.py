"""The evaluator registry: one entry per ``visionprefer eval`` benchmark, holding everything the rest of the
package needs to know about it.

An :class:`Evaluator` has

* ``add_arguments(parser)``: its command-line options (``visionprefer eval NAME ...``);
* ``run(args) -> summary``: runs it from the parsed options and returns the summary it wrote;
* ``summary_file`` and ``summary_fields``: the summary JSON it writes into ``--out`` and the keys that
  summary always has (checked after every run);
* ``report(args, summary)``: the lines the command prints;
* ``entries(summary, out_dir) -> {benchmark: entry}``: its leaderboard entries (``--submission``; None when
  it has none), with ``submission_summary(args, summary)`` when the submission needs more than the summary;
* ``benchmarks``: the leaderboard benchmarks those entries are (one :class:`Benchmark` each).

A :class:`Benchmark` is a key of a submission's ``benchmarks`` object: its table ``title``, the ``metrics``
a table can be ranked by, ``check(prefix, entry)`` (the semantic checks JSON Schema cannot express: sums,
rates, intervals; see :mod:`visionprefer.leaderboard.fields`), ``rows(...)`` (its leaderboard rows, see
:mod:`visionprefer.leaderboard.table`), and, for a benchmark that ``submission.schema.json`` does not
define, the JSON Schema of its entry (``schema``; it may ``$ref`` the file's ``#/$defs/...``).

The CLI (``cli.py``), the validator (``leaderboard.schema``), ``--submission`` (``leaderboard.from_eval``)
and the tables (``leaderboard.render``) all loop over this registry. Adding an evaluator is one module that
defines an :class:`Evaluator` and one :func:`register` call (the built-in ones are the modules in
``visionprefer.evaluate.specs``, registered on first use).

Importing this module is cheap: the built-in entries import their evaluator (numpy, torch, ...) when run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: The built-in evaluators, in the order ``visionprefer eval --help`` lists them: modules of
#: ``visionprefer.evaluate.specs``, each defining ``EVALUATOR``.
BUILTIN = ("score", "tifa", "winrate", "hpsv2", "agreement")


@dataclass(frozen=True)
class Benchmark:
    """One leaderboard benchmark (a key of a submission's ``benchmarks``)."""

    name: str
    title: str
    #: Metrics a table can be ranked by; the first is the default.
    metrics: tuple[str, ...]
    #: ``check(prefix, entry) -> [(field, message)]`` for an entry that already matches the JSON Schema;
    #: ``prefix`` is ``("benchmarks", name)``.
    check: Callable[[tuple[Any, ...], Mapping[str, Any]], list[tuple[str | None, str]]]
    #: ``rows(file_name, submission, entry, metric) -> [(key, make_table, row)]``.
    rows: Callable[[str, Mapping[str, Any], Mapping[str, Any], str], list[Any]]
    #: The entry's JSON Schema when ``submission.schema.json`` does not define this benchmark.
    schema: Mapping[str, Any] | None = None
    #: Whether ``rows`` also accepts metrics beyond ``metrics`` (TIFA: any element type).
    open_metrics: bool = False


def _no_report(args: argparse.Namespace, summary: Mapping[str, Any]) -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class Evaluator:
    """One ``visionprefer eval`` benchmark."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Mapping[str, Any]]
    summary_file: str
    summary_fields: tuple[str, ...]
    report: Callable[[argparse.Namespace, Mapping[str, Any]], Iterable[str]] = _no_report
    benchmarks: tuple[Benchmark, ...] = ()
    entries: Callable[[Mapping[str, Any], Path], dict[str, dict[str, Any]]] | None = None
    submission_summary: Callable[[argparse.Namespace, Mapping[str, Any]], Mapping[str, Any]] | None = None
    #: Free-form extras for a plugin's own use.
    extra: Mapping[str, Any] = field(default_factory=dict)


_EVALUATORS: dict[str, Evaluator] = {}
_loaded = False
_version = 0  # bumped on every change, so that caches built from the registry (the validator) refresh


def _ensure_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for name in BUILTIN:
        _add(importlib.import_module(f"{__package__}.specs.{name}").EVALUATOR, replace=False)


def _add(ev: Evaluator, *, replace: bool) -> None:
    global _version
    if not replace and ev.name in _EVALUATORS:
        raise ValueError(f"an evaluator named {ev.name!r} is already registered")
    taken = {b.name: e.name for e in _EVALUATORS.values() if e.name != ev.name for b in e.benchmarks}
    for b in ev.benchmarks:
        if b.name in taken:
            raise ValueError(f"benchmark {b.name!r} already belongs to evaluator {taken[b.name]!r}")
    _EVALUATORS[ev.name] = ev
    _version += 1


def register(evaluator: Evaluator, *, replace: bool = False) -> Evaluator:
    """Add an evaluator (and its leaderboard benchmarks); returns it. A name or benchmark that is already
    registered is an error unless ``replace``."""
    _ensure_builtins()
    _add(evaluator, replace=replace)
    return evaluator


def unregister(name: str) -> None:
    """Remove an evaluator registered with :func:`register` (tests use this to clean up)."""
    global _version
    _ensure_builtins()
    _EVALUATORS.pop(name, None)
    _version += 1


def version() -> int:
    """A number that changes whenever the registry does."""
    _ensure_builtins()
    return _version


def evaluators() -> dict[str, Evaluator]:
    """Every registered evaluator by name, built-ins first."""
    _ensure_builtins()
    return dict(_EVALUATORS)


def evaluator(name: str) -> Evaluator:
    _ensure_builtins()
    try:
        return _EVALUATORS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluator {name!r}; choose from {', '.join(_EVALUATORS)}") from None


def benchmarks() -> dict[str, Benchmark]:
    """Every leaderboard benchmark by name, in registry order."""
    _ensure_builtins()
    return {b.name: b for ev in _EVALUATORS.values() for b in ev.benchmarks}


def benchmark(name: str) -> Benchmark:
    found = benchmarks()
    if name not in found:
        raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(found)}")
    return found[name]


def run_evaluator(ev: Evaluator, args: argparse.Namespace) -> Mapping[str, Any]:
    """Run ``ev`` from parsed options; checks that its summary has the fields its entry promises."""
    summary = ev.run(args)
    missing = [f for f in ev.summary_fields if f not in summary]
    if missing:
        raise RuntimeError(f"evaluator {ev.name!r}: its summary lacks {', '.join(missing)}")
    return summary


# ---------------------------------------------------------------------------------------- shared options


def add_source_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of an evaluator that generates images with ``--model`` or reads ``--images``."""
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--model", help="preset (sd15, sdxl, tiny-sd15, ...) or diffusers id/path: generate images"
    )
    g.add_argument("--images", metavar="DIR", help="existing images in the benchmark's layout")
    sp.add_argument("--out", required=True, metavar="DIR", help="where results (and generated images) go")
    sp.add_argument("--submission", metavar="FILE", help="also write a leaderboard submission")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--steps", type=int)
    sp.add_argument("--guidance-scale", type=float, default=7.5)


def source_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments :func:`add_source_arguments`' options give a ``run_*`` function."""
    return {
        "images": args.images,
        "model": args.model,
        "device": args.device,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "progress": not getattr(args, "quiet", False),
    }
