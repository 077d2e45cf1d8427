"""The annotate stage: feedback for every generated image, from the VLM judge or from metric scorers.

Judge backend: a prompt's finished images are split into groups (``group_size``, default all), each shown
in a deterministic shuffled order (optionally also reversed, to cancel position bias). A group's
annotation key digests the image keys in the order shown, the judge model and the guide version, so a new
judge or an edited guide re-annotates without regenerating. Records go to ``annotate/done-rank<R>.jsonl``,
failures (with the raw answer) to ``annotate/failed-rank<R>.jsonl``.

Metrics backend (AGFSync): one record per image with VQA, CLIP and aesthetic scores and their weighted total.

A prompt is annotated once all its planned images are finished (or have failed permanently), so groups
never change composition after the fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config import ASPECTS, BuildConfig
from ..dist import ProcessInfo, process_info
from ..errors import RETRIED, BudgetExceeded, classify_failure, first_line
from ..keys import digest
from ..rundir import LogIndex, RunDir
from .common import AnnotateReport, prompt_images
from .judge import SCHEMA_VERSION as JUDGE_SCHEMA_VERSION
from .judge import Judge, JudgeClient, judge_identity

STAGE = "annotate"
KEY = "annotation_id"


@dataclass(frozen=True)
class Group:
    annotation_id: str
    prompt_id: str
    prompt: str
    image_ids: tuple[str, ...]  # in the order shown to the judge
    order: str  # "shuffled" or "reversed"
    files: tuple[str, ...]


def judge_groups(config: BuildConfig, run: RunDir, guide_version: str) -> tuple[list[Group], int]:
    """Every judge group of the run (prompts in prompt-file order) and the number of prompts waiting."""
    groups: list[Group] = []
    waiting = 0
    for _, records, mine in prompt_groups(config, run, guide_version):
        waiting += records is None
        groups.extend(mine)
    return groups, waiting


def prompt_groups(
    config: BuildConfig, run: RunDir, guide_version: str, prompts: Iterable[dict[str, Any]] | None = None
) -> Iterator[tuple[str, list[dict[str, Any]] | None, list[Group]]]:
    """Per prompt (in prompt-file order, or in the order of ``prompts``): its id, the generation records of
    its finished images (sorted by image id; None while the prompt waits for images) and its judge groups.
    One prompt's records and groups are in memory at a time."""
    for prompt_id, _, stored in prompt_images(config, run, prompts):
        if stored is None:
            yield prompt_id, None, []
        elif stored:
            records = list(stored)  # one prompt's records, read once
            yield prompt_id, records, _groups_of(config, run, guide_version, prompt_id, records)


def _groups_of(
    config: BuildConfig, run: RunDir, guide_version: str, prompt_id: str, records: list[dict[str, Any]]
) -> list[Group]:
    judge = config.annotate.judge
    groups: list[Group] = []
    size = judge.group_size or len(records)
    for start in range(0, len(records), size):
        members = records[start : start + size]
        ids = [r["image_id"] for r in members]
        shown = list(range(len(members)))
        random.Random(digest("order", *ids)).shuffle(shown)
        orders = [("shuffled", shown)]
        if judge.both_orders and len(members) > 1:
            orders.append(("reversed", shown[::-1]))
        for name, order in orders:
            shown_ids = tuple(ids[i] for i in order)
            key = digest(
                "annotation",
                list(shown_ids),
                judge_identity(judge),
                guide_version,
                [judge.score_min, judge.score_max],
                JUDGE_SCHEMA_VERSION,
            )
            groups.append(
                Group(
                    key,
                    prompt_id,
                    members[0]["prompt"],
                    shown_ids,
                    name,
                    tuple(str(run.root / members[i]["file"]) for i in order),
                )
            )
    return groups


def judged_groups(groups: Iterable[Group], done: LogIndex) -> Iterator[tuple[Group, dict[str, Any]]]:
    """The groups that have a done record (``done`` indexes the annotate stage's done logs), each with its
    record, read one at a time (a streaming join: ``groups`` may be a generator)."""
    for j in done.join((g, [g.annotation_id]) for g in groups):
        if j.done:
            yield j.item, j.records[0]


def planned_annotations(config: BuildConfig, run: RunDir) -> tuple[list[str], int]:
    """Annotation keys the current config wants (for the images finished so far), and prompts waiting."""
    if config.annotate.backend == "judge":
        from .judge import load_guide

        groups, waiting = judge_groups(config, run, load_guide(config.annotate.judge)[1])
        return [g.annotation_id for g in groups], waiting
    if config.annotate.backend == "metrics":
        from .metrics import metric_tasks

        tasks, waiting = metric_tasks(config, run)
        return [t.annotation_id for t in tasks], waiting
    return [], 0


def run_annotate_stage(
    config: BuildConfig,
    run: RunDir,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    proc: ProcessInfo | None = None,
) -> AnnotateReport:
    backend = config.annotate.backend
    proc = proc or process_info()
    if backend == "none":
        return AnnotateReport(backend="none")
    if backend == "judge":
        report = annotate_with_judge(config, run, retry_failed=retry_failed, progress=progress, proc=proc)
    else:
        from .calibration import calibrate_metrics
        from .metrics import annotate_with_metrics

        report = annotate_with_metrics(
            config,
            run,
            retry_failed=retry_failed,
            progress=progress,
            proc=proc,
            calibrate=calibrate_metrics,
        )
    proc.launch_totals(report, ("made", "failed"))  # the whole launch's counts, on every rank
    return report


def annotate_with_judge(
    config: BuildConfig,
    run: RunDir,
    *,
    retry_failed: bool,
    progress: bool,
    proc: ProcessInfo,
    client: JudgeClient | None = None,
) -> AnnotateReport:
    """Judge every group of this rank that is not done (nor blocked). ``client`` answers the requests
    (default: the LLM layer's client for ``annotate.judge.llm``; the Batch API in batch mode)."""
    from ..llm import LLMClient, run_bounded
    from ..progress import progress_bar

    judge = config.annotate.judge
    proto = Judge(judge, config.annotate.aspect_weights)
    groups, waiting = judge_groups(config, run, proto.version)
    log = run.stage_log(STAGE, KEY, proc.rank)
    state = log.keys_state()  # finished keys only: a judge record carries every explanation
    blocked = state.blocked(retry_failed)
    report = AnnotateReport(backend="judge", planned=len(groups), waiting=waiting)
    report.done_before = sum(1 for g in groups if g.annotation_id in state.done)
    report.blocked = sum(
        1 for g in groups if g.annotation_id in blocked and g.annotation_id not in state.done
    )
    mine = [g for i, g in enumerate(groups) if i % proc.world_size == proc.rank]
    todo = [g for g in mine if g.annotation_id not in state.done and g.annotation_id not in blocked]

    def build_request(group: Group) -> dict[str, Any]:
        return proto.request(group.prompt, list(group.files))

    if client is None and judge.backend == "local" and todo:
        sizes = {len(g.files) for g in todo} | ({2} if judge.calibration else set())  # calibration: pairs
        client = _local_client(config, run, proc, sizes=sizes, proto=proto)

    if judge.calibration is not None and any(
        g.annotation_id not in state.done and g.annotation_id not in blocked for g in groups
    ):
        # The gate before the main spend: rank 0 asks (or reads the recorded result), every rank then
        # checks the recorded result, so that all stop together below min_accuracy.
        from .calibration import CalibrationFailed, calibrate

        if proc.is_main:
            with contextlib.suppress(CalibrationFailed):
                calibrate(config, run, proto, client)
        proc.barrier()
        report.calibration = calibrate(config, run, proto, client)  # recorded: no request is sent again

    batch_failures: dict[str, Any] = {}  # request key -> why the Batch API has not answered it
    reasks: dict[str, tuple[Group, dict[str, Any]]] = {}  # batch mode: invalid answers to ask again

    async def annotate_all(bar: Any) -> bool:
        llm: Any = client or LLMClient(
            judge.llm,
            folder=run.llm_dir,
            purpose="judge",
            prices=config.prices,
            rank=proc.rank,
            ranks=proc.world_size,  # the groups are split across ranks: so are the limits and the budget
            batch_pricing=judge.mode == "batch",
        )
        budget_hit = False
        last_round = True  # batch mode: no re-ask after this validation round

        async def one(group: Group) -> Any:
            from ..llm import LLMResult

            try:
                request = await asyncio.to_thread(build_request, group)
            except (
                OSError,
                ValueError,
            ) as e:  # a missing or undecodable image: this group fails, not the stage
                return LLMResult(
                    ok=False,
                    kind="transient",
                    error=f"image unreadable: {first_line(e)}",
                    failure_kind="image_unreadable",
                )
            check = proto.validator(len(group.files))

            if judge.mode == "batch":
                from ..llm import LLMResult
                from ..llm.cache import request_key

                result = await llm.replay(request, validate=check)
                if result.pending is None:
                    return result
                failure = batch_failures.get(request_key(result.pending))
                if failure is not None:  # not answered by the batch: its reason, not a generic one
                    return LLMResult(
                        ok=False,
                        kind=failure.kind,
                        error=f"batch: {failure.error}",
                        text=failure.raw if failure.raw is not None else result.text,
                        failure_kind=failure.failure_kind
                        if failure.failure_kind != "other"
                        else classify_failure(failure.error),
                    )
                if last_round:
                    return result
                reasks[group.annotation_id] = (group, result.pending)
                return None  # settled in a later round, after the re-ask's batch
            result = await llm.call(request, validate=check)
            if not result.ok and result.kind == "permanent" and retry_failed:
                result = await llm.call(request, validate=check, refresh=True)
            return result

        def done(group: Group, result: Any) -> None:
            nonlocal budget_hit
            if result is None:  # batch mode: waits for its re-ask
                return
            if result.ok:
                log.record_done([proto.record(group, result.value)])
                report.made += 1
            else:
                budget_hit |= result.kind == "budget"
                kind = "transient" if result.kind in RETRIED else "permanent"
                failure_kind = result.failure_kind or classify_failure(result.error)
                log.record_failed(
                    [group.annotation_id],
                    reason=result.error or "failed",
                    kind=kind,
                    raw=result.text,
                    failure_kind=failure_kind,
                )
                report.failed += 1
                report.failures[failure_kind] = report.failures.get(failure_kind, 0) + 1
            bar.update(1)
            bar.set_postfix_str(f"${llm.spent:.4f}")

        async with llm:
            if judge.mode != "batch":
                await run_bounded(todo, one, done, workers=2 * llm.concurrency)
                return budget_hit
            # Batch mode: submit, collect into the cache, validate by replaying it; invalid answers are
            # re-asked (the validation error quoted, as online) in a further batch, up to the retry budget.
            from .batch import submit_judge_batch

            groups_now: list[Group] = todo
            requests: Any = (build_request(g) for g in todo)  # read once, spooled by the runner
            rounds = 1 + judge.llm.invalid_retries
            for round_no in range(rounds):
                last_round = round_no == rounds - 1
                answered = await asyncio.to_thread(
                    submit_judge_batch, config, run, requests, proc=proc, cache=llm.cache, usage=llm.usage
                )
                batch_failures.update(answered)
                reasks.clear()
                await run_bounded(groups_now, one, done, workers=2 * llm.concurrency)
                if not reasks:
                    break
                groups_now = [g for g, _ in reasks.values()]
                requests = [req for _, req in reasks.values()]
        return budget_hit

    try:
        with progress_bar(
            total=len(todo), desc="annotate", unit="group", enabled=progress and proc.is_main
        ) as bar:
            budget_hit = asyncio.run(annotate_all(bar)) if todo else False
    finally:
        log.close()
    if budget_hit:
        raise BudgetExceeded(
            "annotate: max_cost_usd reached; finished annotations are kept, raise the budget and "
            "run the same command to continue"
        )
    return report


def _local_client(
    config: BuildConfig, run: RunDir, proc: ProcessInfo, *, sizes: set[int], proto: Judge
) -> JudgeClient:
    """The in-process judge, its model loaded and the schema of every group size compiled: a model that is
    not a VLM, a missing chat template or a schema the grammar engine rejects stops here, before judging."""
    from ..errors import ConfigError
    from ..llm.usage import UsageLog
    from .judge import judge_schema
    from .local_judge import LocalJudgeClient

    judge = config.annotate.judge
    if judge.llm.structured_output != "json_schema":
        raise ConfigError(
            "annotate.judge.llm.structured_output: the local backend always decodes under the judge's "
            "JSON schema; leave it at json_schema"
        )
    client = LocalJudgeClient(judge.local, usage=UsageLog(run.llm_dir, proc.rank), rank=proc.rank)
    for n in sorted(sizes):
        client.check_schema(judge_schema(n, proto.lo, proto.hi))
    return client


# --------------------------------------------------------------------------------------------- feedback view
def load_feedback(
    config: BuildConfig, run: RunDir, *, explanations: bool = True
) -> dict[str, dict[str, Any]]:
    """Per finished image: the feedback columns of the dataset (aspects, metrics, overall, rank, judge, ...).

    Judge annotations of the current groups are averaged over the orders shown; ``overall`` is the
    configured weighted mean of the aspects; ``rank`` is 1 for the best ``overall`` among the prompt's
    annotated images (ties share the better rank). Records are read one at a time and folded in, so what
    is held is the result. ``explanations=False`` leaves the judge's explanations out (a few hundred bytes
    an image that the pairs stage does not need).
    """
    backend = config.annotate.backend
    if backend == "none":
        return {}
    if backend == "judge":
        feedback: dict[str, dict[str, Any]] = {}
        for _, _, rows in judge_feedback_by_prompt(config, run, explanations=explanations):
            feedback.update(rows)
    else:
        from .metrics import metric_feedback

        feedback = metric_feedback(config, run, run.stage_log(STAGE, KEY).done_index())
    assign_ranks(feedback)
    return feedback


def judge_feedback_by_prompt(
    config: BuildConfig,
    run: RunDir,
    *,
    explanations: bool = True,
    prompts: Iterable[dict[str, Any]] | None = None,
    done: LogIndex | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]]]:
    """:func:`load_feedback` of the judge, one prompt at a time (prompt-file order, or the order of
    ``prompts``): each prompt with judged images, the generation records of its finished images and the
    feedback rows of its judged images (without ``rank``, which :func:`load_feedback` adds). What is held
    is the two stages' done-log indexes and one prompt's records."""
    from .judge import load_guide, overall_score

    _, version = load_guide(config.annotate.judge)
    if done is None:
        done = run.stage_log(STAGE, KEY).done_index()  # addresses; records are read one at a time below
    weights = config.annotate.aspect_weights
    for prompt_id, records, groups in prompt_groups(config, run, version, prompts):
        if not groups:
            continue
        feedback: dict[str, dict[str, Any]] = {}
        for g, rec in judged_groups(groups, done):
            for image_id in g.image_ids:
                result = rec["results"][image_id]
                row = feedback.get(image_id)
                if row is None:  # the first order shown: its explanations are the ones kept
                    row = feedback[image_id] = {
                        "judge": rec["judge"],
                        "guide_version": rec["guide_version"],
                        "prompt_id": g.prompt_id,
                        "metrics": None,
                        "judge_ranks": [],
                        "rank_consistent": True,
                        **{
                            a: {
                                "score": 0.0,
                                "explanation": result[a]["explanation"] if explanations else None,
                            }
                            for a in ASPECTS
                        },
                    }
                for aspect in ASPECTS:
                    row[aspect]["score"] += result[aspect]["score"]  # a sum until all orders are in
                row["judge_ranks"].append(result["rank"])
                row["rank_consistent"] = row["rank_consistent"] and rec["rank_consistent"]
        if not feedback:
            continue
        for row in feedback.values():
            for aspect in ASPECTS:
                row[aspect]["score"] /= len(row["judge_ranks"])
            row["overall"] = overall_score(row, weights)
        yield prompt_id, records or [], feedback


def order_effects(
    config: BuildConfig,
    run: RunDir,
    *,
    groups: Iterable[Group] | None = None,
    done: LogIndex | None = None,
) -> dict[str, Any] | None:
    """How much the order shown moved the judge, from the groups judged in both orders
    (``both_orders: true``; None otherwise). ``groups`` (the current judge groups) and ``done`` (the index
    of the annotate done logs) are derived from the run unless the caller has them already:

    * ``order_agreement``: over every pair of images in such a group, the fraction whose preference by
      ``overall`` (better, worse or tied) is the same in both orders — 1.0 for a judge blind to order;
    * ``first_position_gain``: mean ``overall`` of an image shown first minus its ``overall`` in the
      other order (where it was shown last) — 0 without position bias, positive when the judge favours
      the first image;
    * ``groups``: the groups with both orders judged.
    """
    from itertools import combinations

    judge = config.annotate.judge
    if config.annotate.backend != "judge" or not judge.both_orders:
        return None
    from .judge import load_guide, overall_score

    if groups is None:
        groups, _ = judge_groups(config, run, load_guide(judge)[1])
    if done is None:
        done = run.stage_log(STAGE, KEY).done_index()
    weights = config.annotate.aspect_weights
    same = total = n = n_gains = 0
    gains = 0.0
    # A group's two orders belong to one prompt: the orders seen are folded in prompt by prompt, so what
    # is held is one prompt's groups (``groups`` may be a generator).
    shown: dict[tuple[str, ...], dict[str, tuple[tuple[str, ...], dict[str, float]]]] = {}

    def fold() -> None:
        nonlocal same, total, n, gains, n_gains
        for orders in shown.values():
            if len(orders) != 2:
                continue
            n += 1
            (ids_a, a), (ids_b, b) = orders["shuffled"], orders["reversed"]
            for i, j in combinations(sorted(a), 2):
                total += 1
                same += (a[i] > a[j]) - (a[i] < a[j]) == (b[i] > b[j]) - (b[i] < b[j])
            gains += a[ids_a[0]] - b[ids_a[0]]  # summed in the order a list of them would be
            gains += b[ids_b[0]] - a[ids_b[0]]
            n_gains += 2
        shown.clear()

    prompt = None
    for g, rec in judged_groups(groups, done):
        if g.prompt_id != prompt:
            fold()
            prompt = g.prompt_id
        overall = {i: overall_score(rec["results"][i], weights) for i in g.image_ids}
        shown.setdefault(tuple(sorted(g.image_ids)), {})[g.order] = (g.image_ids, overall)
    fold()
    return {
        "groups": n,
        "order_agreement": round(same / total, 4) if total else None,
        "first_position_gain": round(gains / n_gains, 4) if n_gains else None,
    }


def assign_ranks(feedback: dict[str, dict[str, Any]]) -> None:
    """Set ``rank`` of each feedback row: 1 + the number of images of its prompt with a better ``overall``
    (ties share the better rank). Prompt by prompt: a dict of one prompt's rows gets the same ranks."""
    by_prompt: dict[str, list[str]] = {}
    for image_id, row in feedback.items():
        by_prompt.setdefault(row["prompt_id"], []).append(image_id)
    for ids in by_prompt.values():
        for image_id in ids:
            mine = feedback[image_id]["overall"]
            feedback[image_id]["rank"] = 1 + sum(1 for other in ids if feedback[other]["overall"] > mine)
