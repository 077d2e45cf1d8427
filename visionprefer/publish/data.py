"""What a published dataset is made of, read from the run directory: the rows in row order
(:func:`collect`), the images' feedback read along them, and the feedback's aggregates for the card and the
report (:class:`FeedbackSummary`), so that neither holds the feedback of every image.

Imported by the publish stage and the report; imports neither (nor :mod:`visionprefer.status`).
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ASPECTS, METRICS, BuildConfig
from ..errors import StageOrderError
from ..rundir import LogIndex, RunDir, StoredRecords

SAMPLE_PROMPTS = 8  # prompts shown in the report's sample grid (their feedback is kept whole)
SUMMARY_KEYS = ("generator_name", "guidance_scale")
"""The generation-record fields the card's and the report's score tables group images by."""


# --------------------------------------------------------------------------------------------- rows
def collect(config: BuildConfig, run: RunDir) -> dict[str, Any]:
    """Everything the dataset is made of, in row order.

    ``prompts``, ``images`` and ``pairs`` are :class:`~visionprefer.rundir.StoredRecords`: sequences whose
    records stay in the run's JSONL files and are read back on each pass (8 bytes per row in memory), so
    publishing a run of any size holds a few rows at a time; image bytes are read while writing.

    ``feedback`` is, for a judge build, a :class:`JudgeFeedback`: the judge's feedback (explanations
    included) re-derived from the annotate logs one prompt at a time on each pass, read along the images
    with :func:`feedback_along`. For a metric build it is the per-image dict of
    :func:`~visionprefer.annotate.stage.load_feedback` (a few floats an image); without feedback, ``{}``.
    :func:`feedback_summary` gives the aggregates of either.

    ``images`` are the generation records of the planned images that are finished (``generation_state``:
    first record of an image wins, a record whose file has vanished does not count), by prompt-file
    position, then image id. Prompt ids are unique in ``prompts.jsonl`` (the prompts stage keeps the first
    of any repeat), so a prompt's images are its own planned keys.
    """
    from ..annotate.stage import load_feedback
    from ..generate.stage import stored_prompts
    from ..pairs.stage import pairs_path, stored_pairs

    prompts = stored_prompts(run)
    images = _finished_images(config, run, prompts)
    if not images:
        raise StageOrderError(f"{run.root}: no images yet; run `visionprefer generate CONFIG` first")
    feedback: Any
    if config.annotate.backend == "judge":
        feedback = JudgeFeedback(config, run)
    else:
        feedback = load_feedback(config, run)
    pairs = StoredRecords([])
    if config.annotate.backend != "none":
        if not pairs_path(run).exists():
            raise StageOrderError(f"{run.root}: no pairs yet; run `visionprefer pairs CONFIG` first")
        pairs = _in_row_order(stored_pairs(run), LogIndex([run.prompts_file], "prompt_id"))
    return {"prompts": prompts, "images": images, "feedback": feedback, "pairs": pairs}


def _finished_images(config: BuildConfig, run: RunDir, prompts: Iterable[dict[str, Any]]) -> StoredRecords:
    """The records of the finished planned images, prompt by prompt (in ``prompts`` order), then by id.

    The plan is derived one prompt at a time (``tasks_by_prompt``) and the finished images are looked up
    in the index of the done logs, which is dropped on return: what remains is one address per image.
    """
    from ..generate.plan import tasks_by_prompt
    from ..generate.stage import generation_index

    done = generation_index(run)

    def finished(tasks: list[Any]) -> list[str]:
        return sorted({t.image_id for t in tasks if t.image_id in done})

    return done.records(i for _, tasks in tasks_by_prompt(prompts, config.generate) for i in finished(tasks))


_NOT_A_PROMPT = 1 << 62  # the rank of pairs whose prompt is no longer in the prompt file: after every prompt


def _in_row_order(pairs: StoredRecords, prompts: LogIndex) -> StoredRecords:
    """``pairs`` sorted by prompt-file position, aspect (judge aspects, ``overall``, metrics) and image ids;
    pairs of prompts no longer in the file come last, sorted together by the rest of the key. Ties keep
    file order (a stable sort). ``prompts`` indexes the prompt file by ``prompt_id``.

    Sorting every pair at once would hold a key tuple of three strings per pair; instead the pairs file is
    read as runs of consecutive pairs of one prompt (the pairs stage writes a prompt's pairs together, so
    there are about as many runs as prompts; 16 bytes a run), the runs are ordered by their prompt's
    position in the prompt file (:meth:`~visionprefer.rundir.LogIndex.reading_rank`), and only one prompt's
    pairs are read and sorted at a time.
    """
    import numpy as np

    from ..config import ASPECTS
    from .schema import METRIC_FIELDS

    aspect_order = {a: i for i, a in enumerate([*ASPECTS, "overall", *METRIC_FIELDS])}

    def sort_key(p: dict[str, Any]) -> tuple[Any, ...]:
        return (aspect_order.get(p["aspect"], 99), p["image_id_0"], p["image_id_1"])

    def sorted_positions(positions: Iterable[int]) -> list[int]:
        positions = sorted(positions)  # file order, so that the stable sort below keeps it for ties
        keyed = zip(pairs.take(positions), positions, strict=True)
        return [i for _, i in sorted(keyed, key=lambda item: sort_key(item[0]))]

    starts, ranks = array("q"), array("q")
    last: Any = object()
    for i, p in enumerate(pairs):
        pid = p["prompt_id"]
        if pid != last:
            last = pid
            rank = prompts.reading_rank(pid)
            starts.append(i)
            ranks.append(_NOT_A_PROMPT if rank is None else rank)
    starts.append(len(pairs))
    run_ranks = np.frombuffer(ranks, dtype=np.int64) if ranks else np.empty(0, dtype=np.int64)
    runs = np.argsort(run_ranks, kind="stable")  # by prompt position, then file order
    order = array("q")
    group: list[int] = []
    for k, run_no in enumerate(runs.tolist()):
        group.extend(range(starts[run_no], starts[run_no + 1]))
        if k + 1 == len(runs) or run_ranks[runs[k + 1]] != run_ranks[run_no]:
            order.extend(sorted_positions(group))
            group = []
    return pairs.take(order)


# --------------------------------------------------------------------------------------------- feedback
class JudgeFeedback:
    """The judge's feedback of a run's images (the rows of :func:`~visionprefer.annotate.stage.load_feedback`,
    ``rank`` included), re-derived from the annotate logs one prompt at a time on every pass
    (:func:`~visionprefer.annotate.stage.judge_feedback_by_prompt`) instead of held: a judge row carries
    four explanations, some 3 KB an image. What is held is the index of the annotate done logs."""

    def __init__(self, config: BuildConfig, run: RunDir):
        self.config, self.run = config, run
        self._done: LogIndex | None = None

    def by_prompt(
        self, prompts: Iterable[dict[str, Any]] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Per prompt with judged images (in the order of ``prompts``, default the prompt file): its id and
        its images' feedback rows by image id."""
        from ..annotate.stage import KEY, STAGE, assign_ranks, judge_feedback_by_prompt

        if self._done is None:
            self._done = self.run.stage_log(STAGE, KEY).done_index()
        for prompt_id, _, rows in judge_feedback_by_prompt(
            self.config, self.run, prompts=prompts, done=self._done
        ):
            assign_ranks(rows)
            yield prompt_id, rows

    def along(
        self, images: Iterable[dict[str, Any]], prompts: Iterable[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Each image record of ``images`` with its feedback row (None without one). ``images`` are grouped
        by prompt in the order of ``prompts`` (collect's row order, or a split of it with the split's
        prompts): the two are merged, one prompt's rows held at a time."""
        rows_of = self.by_prompt(prompts)
        pending = next(rows_of, None)
        current: Any = object()
        rows: dict[str, Any] = {}
        for rec in images:
            if rec["prompt_id"] != current:
                current = rec["prompt_id"]
                if pending is not None and pending[0] == current:
                    rows = pending[1]
                    pending = next(rows_of, None)
                else:
                    rows = {}
            yield rec, rows.get(rec["image_id"])
        if pending is not None:  # the images are not in the prompts' order: rows would have been lost
            raise RuntimeError(f"feedback of prompt {pending[0]} met no image of it: images out of row order")


def feedback_along(
    feedback: Mapping[str, dict[str, Any]] | JudgeFeedback,
    images: Iterable[dict[str, Any]],
    prompts: Iterable[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each image record with its feedback row (None without one), from either form of ``collect``'s
    ``feedback``; ``prompts`` are those of ``images`` in row order (needed by :class:`JudgeFeedback` only)."""
    if isinstance(feedback, JudgeFeedback):
        return feedback.along(images, prompts)
    return ((rec, feedback.get(rec["image_id"])) for rec in images)


def score_value(fb: dict[str, Any], name: str) -> float | None:
    """One score of a feedback row: ``overall``, an aspect's score, or ``metrics.<name>``."""
    if name == "overall":
        value = fb.get("overall")
    elif name.startswith("metrics."):
        value = (fb.get("metrics") or {}).get(name.split(".", 1)[1])
    else:
        value = (fb.get(name) or {}).get("score")
    return None if value is None else float(value)


SCORE_FIELDS = ("overall", *ASPECTS, *(f"metrics.{m}" for m in METRICS))


@dataclass
class FeedbackSummary:
    """What the card and the report compute from the images' feedback, gathered in one pass over the
    images (in row order) with their feedback rows:

    * ``annotated``: images with a feedback row;
    * ``aspects`` / ``metrics``: the judge aspects and metrics any row has;
    * ``counts[key][value]``: annotated images per value of ``key`` (generator name, guidance scale);
    * ``values[key][field][value]``: the scores (``overall``, aspects, ``metrics.<name>``) of those images
      in row order, as ``array("d")`` (8 bytes a score: the report's box plots need every one);
    * ``distribution[aspect]``: images per rounded aspect score;
    * ``samples``: the whole rows of the images of the first :data:`SAMPLE_PROMPTS` prompts with images
      (the report's sample grid).
    """

    annotated: int = 0
    aspects: set[str] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    counts: dict[str, dict[Any, int]] = field(default_factory=dict)
    values: dict[str, dict[str, dict[Any, array[float]]]] = field(default_factory=dict)
    distribution: dict[str, Counter[int]] = field(default_factory=dict)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.annotated > 0

    def __len__(self) -> int:
        return self.annotated

    def columns(self) -> list[tuple[str, str]]:
        """(label, field) of every score the feedback has: ``overall``, then judge aspects or metrics."""
        cols = [("overall", "overall")]
        cols += [(a, a) for a in ASPECTS if a in self.aspects]
        cols += [(f"metrics.{m}", f"metrics.{m}") for m in METRICS if m in self.metrics]
        return cols


def summarize_feedback(
    rows: Iterable[tuple[dict[str, Any], dict[str, Any] | None]], *, sample_prompts: int = SAMPLE_PROMPTS
) -> FeedbackSummary:
    """The :class:`FeedbackSummary` of image records with their feedback rows, in row order."""
    s = FeedbackSummary()
    s.counts = {key: defaultdict(int) for key in SUMMARY_KEYS}
    s.values = {key: {f: defaultdict(lambda: array("d")) for f in SCORE_FIELDS} for key in SUMMARY_KEYS}
    s.distribution = {a: Counter() for a in ASPECTS}
    sampled: set[str] = set()
    for rec, fb in rows:
        if len(sampled) < sample_prompts:
            sampled.add(rec["prompt_id"])
        if fb is None:
            continue
        if rec["prompt_id"] in sampled:
            s.samples[rec["image_id"]] = fb
        s.annotated += 1
        scores = {f: score_value(fb, f) for f in SCORE_FIELDS}
        for aspect in ASPECTS:
            if fb.get(aspect):
                s.aspects.add(aspect)
                s.distribution[aspect][round(fb[aspect]["score"])] += 1
        metrics = fb.get("metrics") or {}
        s.metrics.update(m for m in METRICS if metrics.get(m) is not None)
        for key in SUMMARY_KEYS:
            value = rec[key]
            s.counts[key][value] += 1
            for f, v in scores.items():
                if v is not None:
                    s.values[key][f][value].append(v)
    return s


def feedback_summary(data: dict[str, Any]) -> FeedbackSummary:
    """The :class:`FeedbackSummary` of ``collect``'s ``data`` (its ``feedback`` in either form), computed
    once and kept in ``data`` (the card and the report share it)."""
    feedback = data["feedback"]
    cached = data.get("_feedback_summary")
    if cached is None or cached[0] is not feedback:
        summary = summarize_feedback(feedback_along(feedback, data["images"], data["prompts"]))
        data["_feedback_summary"] = cached = (feedback, summary)
    return cached[1]
