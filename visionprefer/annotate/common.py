"""What both feedback backends of the annotate stage (the judge in ``annotate.stage``, metric feedback in
``annotate.metrics``) share: the stage's report and the view of the images ready to annotate."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import BuildConfig
from ..rundir import RunDir, StoredRecords


@dataclass
class AnnotateReport:
    backend: str = "none"
    planned: int = 0
    done_before: int = 0
    made: int = 0
    failed: int = 0
    blocked: int = 0
    waiting: int = 0  # prompts whose images are not all finished yet
    failures: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # the calibration record, when the gate is on


def finished_images(config: BuildConfig, run: RunDir) -> tuple[dict[str, StoredRecords], int]:
    """Per prompt (in prompt-file order), the generation records of its finished images (sorted by image
    id), for prompts whose planned images are all finished or permanently failed; and the number of
    prompts still waiting.

    The plan is derived one prompt at a time and finished images are looked up in the index of the done
    logs, so what is held is one address per image: the records stay on disk
    (:class:`~visionprefer.rundir.StoredRecords`) and are read when a prompt's records are iterated.
    """
    out: dict[str, StoredRecords] = {}
    waiting = 0
    for prompt_id, _, stored in prompt_images(config, run):
        if stored is None:
            waiting += 1
        elif stored:
            out[prompt_id] = stored
    return out, waiting


def prompt_images(
    config: BuildConfig, run: RunDir, prompts: Iterable[dict[str, Any]] | None = None
) -> Iterator[tuple[str, int, StoredRecords | None]]:
    """Every prompt of the run in prompt-file order (or of ``prompts``, in their order): its id, its number
    of planned images, and the records of its finished images (sorted by image id) once all of its planned
    images are finished or permanently failed, else None (the prompt is waiting).

    The planned image keys of one prompt at a time are joined with the index of the generate done logs
    (:meth:`~visionprefer.rundir.LogIndex.join`)."""
    from ..generate.plan import tasks_by_prompt
    from ..generate.stage import generation_failures, generation_index, stored_prompts

    done = generation_index(run)
    permanent = {k for k, f in generation_failures(run, done).items() if f.get("kind") == "permanent"}
    planned = (
        (prompt, sorted({t.image_id for t in tasks}))
        for prompt, tasks in tasks_by_prompt(
            stored_prompts(run) if prompts is None else prompts, config.generate
        )
    )
    for j in done.join(planned):
        if not j.complete and any(i not in permanent for i in j.planned if i not in done):
            yield j.item["prompt_id"], len(j.planned), None
        else:
            yield j.item["prompt_id"], len(j.planned), j.records
