"""The pairs stage: preferences derived from the scores of each prompt's images.

``all`` mode (VisionPrefer): every unordered pair of a prompt's annotated images, once per aspect (the four
judge aspects, or each metric) and once for ``overall``. ``best_worst`` mode (AGFSync): one pair per prompt,
the best against the worst by ``overall``. ``image_id_0`` < ``image_id_1`` always; ``label_0`` is 1.0
when image 0 is preferred, 0.0 when image 1 is, 0.5 for a tie (|difference| <= ``tie_tolerance``). Ties
stay here and are dropped from the DPO export.

Pairs are cheap to derive, so the stage rewrites ``pairs/pairs.jsonl`` atomically each run, streaming: one
prompt's pairs, feedback and generation records are in memory at a time (judge backend: prompts in
prompt-id order, each prompt's planned images and groups joined with the done logs' indexes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from ..config import ASPECTS, METRICS, BuildConfig
from ..errors import StageOrderError
from ..keys import digest
from ..publish.schema import public_model_id
from ..rundir import LogIndex, RunDir, StoredRecords, read_jsonl, write_jsonl


@dataclass
class PairsReport:
    pairs: int = 0
    ties: int = 0
    by_aspect: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return 0


def pairs_path(run: RunDir):
    return run.root / "pairs" / "pairs.jsonl"


def is_dpo_pair(pair: dict[str, Any], aspect: str) -> bool:
    """Whether a pair enters the Diffusion-DPO export: the configured aspect (``publish.dpo_aspect``), not a
    tie."""
    return pair["aspect"] == aspect and pair["label_0"] != 0.5


def preference_label(score_0: float, score_1: float, tie_tolerance: float) -> float:
    if score_0 - score_1 > tie_tolerance:
        return 1.0
    if score_1 - score_0 > tie_tolerance:
        return 0.0
    return 0.5


def _aspect_scores(row: dict[str, Any]) -> dict[str, float]:
    scores = {a: row[a]["score"] for a in ASPECTS if row.get(a)}
    for name in METRICS:
        value = (row.get("metrics") or {}).get(name)
        if value is not None:
            scores[name] = value
    scores["overall"] = row["overall"]
    return scores


def derive_pairs(
    config: BuildConfig,
    feedback: dict[str, dict[str, Any]],
    images: Mapping[str, dict[str, Any]] | Callable[[list[str]], Iterable[dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    """Pairs from per-image feedback (``load_feedback``) and generation records: a mapping by image id, or
    a function returning the records of a prompt's image ids in that order (so that only one prompt's
    records are in memory). Yields the pairs prompt by prompt (prompt ids sorted)."""
    by_prompt: dict[str, list[str]] = {}
    for image_id in sorted(feedback):
        by_prompt.setdefault(feedback[image_id]["prompt_id"], []).append(image_id)
    for prompt_id in sorted(by_prompt):
        ids = by_prompt[prompt_id]
        if len(ids) < 2:
            continue
        if isinstance(images, Mapping):
            records = {i: images[i] for i in ids}
        else:
            records = dict(zip(ids, images(ids), strict=True))
        yield from prompt_pairs(config, prompt_id, ids, feedback, records)


def prompt_pairs(
    config: BuildConfig,
    prompt_id: str,
    ids: list[str],
    feedback: Mapping[str, dict[str, Any]],
    records: Mapping[str, dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """The pairs of one prompt: ``ids`` are its annotated image ids (sorted), ``feedback`` and ``records``
    their feedback rows and generation records by image id."""
    pc = config.pairs
    if pc.mode == "best_worst":
        best = max(ids, key=lambda i: (feedback[i]["overall"], i))
        worst = min(ids, key=lambda i: (feedback[i]["overall"], i))
        candidates = [(min(best, worst), max(best, worst), ["overall"])] if best != worst else []
    else:
        candidates = [(a, b, None) for a, b in combinations(ids, 2)]
    for id0, id1, aspects in candidates:
        s0, s1 = _aspect_scores(feedback[id0]), _aspect_scores(feedback[id1])
        for aspect in aspects or [a for a in s0 if a in s1]:
            r0, r1 = records[id0], records[id1]
            yield (
                {
                    "pair_id": digest("pair", id0, id1, aspect),
                    "prompt_id": prompt_id,
                    "prompt": r0["prompt"],
                    "aspect": aspect,
                    "image_id_0": id0,
                    "image_id_1": id1,
                    "file_0": r0["file"],
                    "file_1": r1["file"],
                    # The generator's name (unique in a build), not the `generator` column (the
                    # preset, or `custom` for every other model: two custom models would look alike).
                    "generator_0": r0.get("generator_name") or r0["generator"],
                    "generator_1": r1.get("generator_name") or r1["generator"],
                    "model_0": public_model_id(r0["model_id"]),
                    "model_1": public_model_id(r1["model_id"]),
                    "guidance_scale_0": r0["guidance_scale"],
                    "guidance_scale_1": r1["guidance_scale"],
                    "score_0": float(s0[aspect]),
                    "score_1": float(s1[aspect]),
                    "label_0": preference_label(s0[aspect], s1[aspect], pc.tie_tolerance),
                }
            )


def streamed_pairs(config: BuildConfig, run: RunDir, found: list[bool]) -> Iterator[dict[str, Any]]:
    """``derive_pairs(config, load_feedback(config, run), ...)`` of the judge, one prompt at a time: the
    prompts are taken in prompt-id order (an index of ``prompts.jsonl``: an address per prompt), and each
    prompt's feedback comes from its groups joined with the annotate done log. ``found[0]`` is set when
    any image has feedback. What is held is the done-log indexes and one prompt's records and pairs."""
    from ..annotate.stage import judge_feedback_by_prompt

    by_id = LogIndex([run.prompts_file], "prompt_id").sorted_records()
    for prompt_id, records, feedback in judge_feedback_by_prompt(
        config, run, explanations=False, prompts=by_id
    ):
        found[0] = True
        ids = sorted(feedback)
        if len(ids) < 2:
            continue
        by_image = {r["image_id"]: r for r in records}
        yield from prompt_pairs(config, prompt_id, ids, feedback, by_image)


def run_pairs_stage(config: BuildConfig, run: RunDir) -> PairsReport:
    from ..annotate.stage import load_feedback
    from ..generate.stage import generation_index, stored_prompts

    if config.annotate.backend == "none":
        return PairsReport()
    report = PairsReport()
    found = [False]

    def counted(pairs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in pairs:
            report.pairs += 1
            report.ties += p["label_0"] == 0.5
            report.by_aspect[p["aspect"]] = report.by_aspect.get(p["aspect"], 0) + 1
            yield p
        if not found[0]:  # raised before the file is renamed: an earlier pairs file stays as it was
            _check_annotated(config, run)

    if config.annotate.backend == "judge":
        stored_prompts(run)  # the stage-order error when there are no prompts yet
        pairs: Iterable[dict[str, Any]] = streamed_pairs(config, run, found)
    else:
        feedback = load_feedback(config, run, explanations=False)  # scores are all the pairs need
        found[0] = bool(feedback)
        index = generation_index(run)  # addresses only; a prompt's records are read with its pairs
        pairs = derive_pairs(config, feedback, index.records)
    write_jsonl(pairs_path(run), counted(pairs))
    return report


def _check_annotated(config: BuildConfig, run: RunDir) -> None:
    """No image has feedback: the stage-order error, unless the current annotations all failed."""
    from ..annotate.stage import planned_annotations

    planned, _ = planned_annotations(config, run)
    failed = run.stage_log("annotate", "annotation_id").failures(lambda key: False)
    if not any(key in failed for key in planned):
        what = "for the current annotate settings " if planned else ""
        raise StageOrderError(
            f"{run.root}: no annotations {what}yet; run `visionprefer annotate CONFIG` first"
        )


def load_pairs(run: RunDir) -> list[dict[str, Any]]:
    return list(read_jsonl(pairs_path(run)))


def stored_pairs(run: RunDir) -> StoredRecords:
    """``load_pairs(run)`` left on disk: a run has several pairs per image (30 per prompt of four images in
    ``all`` mode), so readers of a large run (``publish``) keep 8 bytes per pair instead of the record."""
    return StoredRecords.of_file(pairs_path(run))
