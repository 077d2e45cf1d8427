"""The judge's calibration gate (``annotate.judge.calibration``): before any main annotation is paid for,
the judge answers ``pairs`` pairs of a human preference test set, exactly as it will judge the build's
images (same guide, schema, settings and client), and its agreement with the human labels is measured
(:mod:`visionprefer.evaluate.agreement`, under the test set's own protocol, with Wilson and bootstrap
intervals). Below ``min_accuracy`` the stage stops with one line and nothing else is spent.

The result is kept in ``<run>/annotate/calibration.json`` under a key of everything that decides it (test
set, data, pairs, the judge's identity, guide version and scale): a rerun with the same judge reads it
instead of asking again (the answers are cached anyway), and ``status`` shows it. Calls are recorded under
the purpose ``calibration`` in the usage log; the budget is the judge's ``max_cost_usd``.

Metric feedback has the same gate (``annotate.metrics.calibration``, :func:`calibrate_metrics`): the build's
weighted total scores both images of each pair, and the record (same file, same format) names the metric
models and weights where a judge's names the judge; its key covers them.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import BuildConfig
from ..errors import CalibrationFailed, VisionPreferError
from ..keys import digest
from ..rundir import RunDir, atomic_write_bytes, atomic_write_text

CALIBRATION_FILE = "calibration.json"  # in <run>/annotate/


def calibration_path(run: RunDir) -> Path:
    return run.root / "annotate" / CALIBRATION_FILE


def load_calibration(run: RunDir) -> dict[str, Any] | None:
    try:
        return json.loads(calibration_path(run).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _data_path(config: BuildConfig, data: str) -> str:
    path = Path(data).expanduser()
    if not path.is_absolute() and config.base_dir:
        path = Path(config.base_dir) / path
    return str(path)


def _pairs(config: BuildConfig, cal: Any) -> list[Any]:
    """The first ``pairs`` two-image items of the test set of ``cal`` (a gate's settings) with a human
    preference (ties left out), in the order of their item ids' digests (so the sample does not follow the
    file's order)."""
    from ..evaluate.testsets import load_testset, with_images

    items = load_testset(
        cal.testset, _data_path(config, cal.data), **with_images(cal.testset, cal.loader_options)
    )
    usable = [i for i in items if len(i.images) == 2 and i.ranking and i.ranking[0] != i.ranking[1]]
    usable.sort(key=lambda i: digest("calibration-order", str(i.item_id)))
    return usable[: cal.pairs]


def item_image_files(folder: Path, item: Any, shown: Sequence[int]) -> list[str]:
    """Paths of an item's images ``shown`` (indices, in that order): files as they are, image bytes
    written once under ``folder``."""
    from PIL import Image

    out = []
    for index in shown:
        ref = item.images[index]
        if isinstance(ref, str) and Path(ref).is_file():
            out.append(ref)
            continue
        data = ref.get("bytes") if isinstance(ref, dict) else ref
        if not isinstance(data, (bytes, bytearray)):
            raise VisionPreferError(
                f"test set item {item.item_id!r} image {index} is not readable ({ref!r:.80})"
            )
        path = folder / f"{digest('calibration-image', str(item.item_id), index)}.png"
        if not path.exists():
            with Image.open(io.BytesIO(data)) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG")
            atomic_write_bytes(path, buf.getvalue())  # a torn file would be trusted by the exists() above
        out.append(str(path))
    return out


@dataclass(frozen=True)
class JudgeAsk:
    """One judge request on test-set images: ``item`` (a :class:`~visionprefer.evaluate.testsets.Item`)
    and the indices of its images in the order shown."""

    item: Any
    shown: tuple[int, ...]


@dataclass(frozen=True)
class JudgeAnswer:
    """The judge's answer to ``ask``: ``rows`` (per image shown, in that order, the validated judgement
    with settled ranks; None when it failed) and the client's :class:`~visionprefer.llm.LLMResult`."""

    ask: JudgeAsk
    rows: list[dict[str, Any]] | None
    result: Any


def ask_judge(
    asks: Sequence[JudgeAsk], proto: Any, client: Callable[[], Any], image_dir: Path
) -> list[JudgeAnswer]:
    """Ask the judge ``proto`` (:class:`~visionprefer.annotate.judge.Judge`) about test-set images exactly
    as the build asks about its own: its guide, its per-request schema and validator, rank settling, and
    the client ``client()`` returns (the LLM layer's, with its cache, usage log and budget, or the local
    judge), ``2 x concurrency`` requests in flight. Image bytes are written once under ``image_dir``.
    Answers come back in the order of ``asks``; a failure (budget stops included) is an answer without
    rows, never an exception."""
    from ..llm import run_bounded
    from .judge import settle_ranks

    answers: dict[int, JudgeAnswer] = {}

    async def ask() -> None:
        llm = client()

        async def one(k: int) -> Any:
            a = asks[k]
            files = await asyncio.to_thread(item_image_files, image_dir, a.item, a.shown)
            request = await asyncio.to_thread(proto.request, a.item.prompt, files)
            return await llm.call(request, validate=proto.validator(len(files)))

        def done(k: int, result: Any) -> None:
            rows = settle_ranks(result.value, proto.weights)[0] if result.ok else None
            answers[k] = JudgeAnswer(asks[k], rows, result)

        async with llm:
            await run_bounded(range(len(asks)), one, done, workers=2 * llm.concurrency)

    asyncio.run(ask())
    return [answers[k] for k in range(len(asks))]


def calibrate(config: BuildConfig, run: RunDir, proto: Any, client: Any = None) -> dict[str, Any]:
    """Run (or read) the calibration of the judge ``proto`` (:class:`~visionprefer.annotate.judge.Judge`)
    and return its record; raises :class:`CalibrationFailed` below ``min_accuracy``. ``client`` answers
    the requests (default: the LLM layer's client for the judge's ``llm``, purpose ``calibration``)."""
    from ..evaluate.agreement import agreement
    from .judge import judge_identity, overall_score

    judge = config.annotate.judge
    cal = judge.calibration
    protocol = _protocol(cal)
    key = judge_calibration_key(config, proto.version)
    record = load_calibration(run)
    if record is None or record.get("key") != key:
        items = _usable_pairs(config, cal, "annotate.judge.calibration")
        from ..llm import LLMClient

        answers = ask_judge(
            [JudgeAsk(item, (0, 1)) for item in items],
            proto,
            lambda: (
                client
                or LLMClient(judge.llm, folder=run.llm_dir, purpose="calibration", prices=config.prices)
            ),
            run.root / "annotate" / "calibration",
        )
        scores: dict[Any, float] = {}
        failed = 0
        for answer in answers:
            if answer.rows is None:
                failed += 1
                continue
            for index, row in zip(answer.ask.shown, answer.rows, strict=True):
                scores[(answer.ask.item.item_id, index)] = overall_score(row, proto.weights)
        result = agreement(items, scores, protocol, testset=cal.testset, n_bootstrap=1000, seed=0)
        identity = {"judge": judge_identity(judge), "guide_version": proto.version}
        record = _write_record(run, key, cal, protocol, items, result, identity, failed, ("calibration",))
    return _gate(
        run,
        record,
        cal,
        "judge calibration",
        "annotate.judge.calibration",
        "change the judge or its guide, or lower min_accuracy",
    )


METRICS_PURPOSES = ("calibration-questions", "calibration-vqa")  # usage-log purposes of the metrics gate


def calibrate_metrics(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    """Run (or read) the calibration of metric feedback (``annotate.metrics.calibration``): the weighted
    total (:func:`~visionprefer.annotate.metrics.metric_scorer`, the build's own models and weights) scores
    both images of ``pairs`` test pairs, and its agreement with the human choice is measured as for the
    judge; the record names the metric models and weights in place of the judge. LLM-written questions and
    VLM answers are estimated first and held to their roles' ``max_cost_usd``, recorded under the purposes
    :data:`METRICS_PURPOSES`. Raises :class:`CalibrationFailed` below ``min_accuracy``."""
    from ..evaluate.agreement import agreement, scorer_callable
    from .metrics import images_per_prompt, metric_models, metric_scorer, metrics_fingerprint

    mc = config.annotate.metrics
    cal = mc.calibration
    protocol = _protocol(cal)
    weights = dict(mc.weights)
    key = metrics_calibration_key(config)
    record = load_calibration(run)
    if record is None or record.get("key") != key:
        items = _usable_pairs(config, cal, "annotate.metrics.calibration")
        scorer, _ = metric_scorer(config, run, images_per_prompt(items), purposes=METRICS_PURPOSES)
        result = agreement(
            items, scorer_callable(scorer), protocol, testset=cal.testset, n_bootstrap=1000, seed=0
        )
        identity = {
            "scorer": {"backend": "metrics", "fingerprint": metrics_fingerprint(mc), **metric_models(mc)},
            "weights": weights,
            "guide_version": None,
        }
        record = _write_record(
            run, key, cal, protocol, items, result, identity, result.skipped_pairs, METRICS_PURPOSES
        )
    return _gate(
        run,
        record,
        cal,
        "metric feedback calibration",
        "annotate.metrics.calibration",
        "change the metric models or their weights, or lower min_accuracy",
    )


# ------------------------------------------------------------------------------------ what both gates share
def _protocol(cal: Any) -> str:
    from ..evaluate.testsets import testset_spec

    return cal.protocol or testset_spec(cal.testset)["protocol"]


def _key(config: BuildConfig, cal: Any, *identity: Any) -> str:
    """The record's key: the test sample and protocol, and ``identity`` (what decides the scores)."""
    return digest(
        "calibration", cal.testset, _data_path(config, cal.data), cal.pairs, _protocol(cal), *identity
    )


def judge_calibration_key(config: BuildConfig, guide_version: str) -> str:
    """The key of the judge gate's record: the test sample, the judge's identity, guide and scale."""
    from .judge import judge_identity

    judge = config.annotate.judge
    scale = [judge.score_min, judge.score_max]
    return _key(config, judge.calibration, judge_identity(judge), guide_version, scale)


def metrics_calibration_key(config: BuildConfig) -> str:
    """The key of the metrics gate's record: the test sample, the metric models and the weights."""
    from .metrics import metrics_fingerprint

    mc = config.annotate.metrics
    return _key(config, mc.calibration, "metrics", metrics_fingerprint(mc), dict(mc.weights))


def recorded(run: RunDir, key: str) -> bool:
    """Whether the run holds the gate's record under ``key`` (so the gate asks nothing again)."""
    record = load_calibration(run)
    return record is not None and record.get("key") == key


def _usable_pairs(config: BuildConfig, cal: Any, section: str) -> list[Any]:
    items = _pairs(config, cal)
    if not items:
        raise VisionPreferError(f"{section}: {cal.testset} at {cal.data} has no pair with a human preference")
    return items


def _write_record(
    run: RunDir,
    key: str,
    cal: Any,
    protocol: str,
    items: list[Any],
    result: Any,
    identity: dict[str, Any],
    unanswered: int,
    purposes: tuple[str, ...],
) -> dict[str, Any]:
    """Write the calibration record (``identity``: who scored, e.g. the judge and its guide version) and
    return it; ``usd`` is what the usage log holds under ``purposes``."""
    from ..llm.usage import usage_totals

    totals = usage_totals(run.llm_dir) if run.llm_dir.exists() else {}
    spent = sum(totals.get(p, {}).get("usd", 0.0) for p in purposes)
    record = {
        "key": key,
        "testset": cal.testset,
        "protocol": protocol,
        "pairs": len(items),
        "unanswered": unanswered,
        **identity,
        "min_accuracy": cal.min_accuracy,
        "accuracy": result.value,
        "wilson_ci": result.wilson_ci,
        "bootstrap_ci": result.bootstrap_ci,
        "n_pairs": result.n_pairs,
        "usd": round(spent, 6),
    }
    atomic_write_text(calibration_path(run), json.dumps(record, indent=2) + "\n")
    return record


def _gate(
    run: RunDir, record: dict[str, Any], cal: Any, who: str, section: str, advice: str
) -> dict[str, Any]:
    """Apply ``min_accuracy`` to ``record`` (kept in the record as last applied); raise
    :class:`CalibrationFailed` below it."""
    accuracy = record["accuracy"]
    passed = accuracy is not None and accuracy >= cal.min_accuracy
    if (record.get("min_accuracy"), record.get("passed")) != (cal.min_accuracy, passed):
        record = {**record, "min_accuracy": cal.min_accuracy, "passed": passed}  # the gate as last applied
        atomic_write_text(calibration_path(run), json.dumps(record, indent=2) + "\n")
    if not passed:
        ci = record.get("wilson_ci") or record.get("bootstrap_ci")
        interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
        raise CalibrationFailed(
            f"{who}: accuracy {shown}{interval} on {record['n_pairs']} pairs of {record['testset']} "
            f"({record['protocol']}) is below {section}.min_accuracy {cal.min_accuracy:g}; "
            f"no image was annotated ({advice})"
        )
    return record
