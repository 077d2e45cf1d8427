"""Metric feedback (AGFSync): VQA score over a prompt's questions, CLIP score and LAION aesthetic score.

Per image: the questions (template, offline; or written by an LLM through the LLM layer) are answered by a
VQA model (BLIP, or a VLM through the LLM layer), and the VQA score is the fraction answered as expected.
CLIP score is 100 x cosine(image, prompt); the aesthetic score is the LAION v2 head on the CLIP image
embedding (computed once when both use the same CLIP). Records store the raw metrics; the weighted total
(``annotate.metrics.weights``) is applied when the feedback is read, so re-weighting recomputes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import METRICS, BuildConfig, MetricsConfig
from ..dist import ProcessInfo
from ..errors import BudgetExceeded, VQAFailed, classify_failure
from ..keys import digest
from ..rundir import LogIndex, RunDir
from ..scorers.questions import ELEMENT_TYPES

STAGE, KEY = "annotate", "annotation_id"


@dataclass(frozen=True)
class MetricTask:
    annotation_id: str
    image_id: str
    prompt_id: str
    prompt: str
    file: str


def metric_models(mc: MetricsConfig) -> dict[str, Any]:
    """The models (and their settings) that measure the raw metrics, by role: what enters the annotation
    key. ``cq`` and ``rewards`` are None when off."""
    questions = ["llm", mc.question_llm.model] if mc.questions == "llm" else ["template"]
    vqa = (
        ["vlm", (mc.vqa_llm.model if mc.vqa_llm else None)]
        if mc.vqa_backend == "vlm"
        else ["blip", mc.vqa_model]
    )
    cq = [mc.cq_model, mc.cq_threshold] if mc.cq_model else []
    # Only when set, so that turning a reward model on adds to the key and leaves earlier keys as they were.
    rewards = [["pickscore", mc.pickscore_model, mc.pickscore_processor]] if mc.pickscore_model else []
    checkpoint = Path(mc.hpsv2_checkpoint).name if mc.hpsv2_checkpoint else None  # not where it lies
    rewards += [["hpsv2", mc.hpsv2_version, checkpoint]] if mc.hpsv2_version else []
    return {
        "questions": questions,
        "vqa": vqa,
        "clip": mc.clip_model,
        "aesthetic": mc.aesthetic_model,
        "aesthetic_clip": mc.aesthetic_clip_model,
        "cq": cq or None,
        "rewards": rewards or None,
    }


def metrics_fingerprint(mc: MetricsConfig) -> str:
    """Settings that change the raw metrics (the weights do not: they apply when reading)."""
    m = metric_models(mc)
    return digest(
        "metrics",
        m["questions"],
        m["vqa"],
        m["clip"],
        m["aesthetic"],
        m["aesthetic_clip"],
        *(m["cq"] or []),
        *(m["rewards"] or []),
        length=16,
    )


def _task(r: dict[str, Any], fp: str, run: RunDir) -> MetricTask:
    return MetricTask(
        digest("metric-annotation", r["image_id"], fp),
        r["image_id"],
        r["prompt_id"],
        r["prompt"],
        str(run.root / r["file"]),
    )


def metric_tasks(config: BuildConfig, run: RunDir) -> tuple[list[MetricTask], int]:
    from .common import finished_images

    images, waiting = finished_images(config, run)
    fp = metrics_fingerprint(config.annotate.metrics)
    return [_task(r, fp, run) for records in images.values() for r in records], waiting


def metric_chunks(config: BuildConfig, run: RunDir) -> tuple[list[tuple[int, list[MetricTask]]], int]:
    """The fixed chunks metric feedback is scored in, and the number of prompts not in a ready chunk.

    As generation's (``generate.plan``), chunks are cut from the global plan, not from what a process has
    to do: consecutive prompts in prompt-file order, whole prompts only, as many as fit ``batch_size``
    *planned* images (one prompt alone when it has more). A chunk is scored when all of its prompts are
    ready (every image finished or permanently failed), always whole (the images already annotated too;
    only the missing records are written), and by the rank ``index % world_size``. So every scorer call
    holds the same images in the same order whatever the process layout or the resume history, and the
    floats are the same bytes (a differently composed batch can change the last bits). A prompt's images
    stay on one rank: its LLM-written questions are paid for once."""
    from .common import prompt_images

    fp = metrics_fingerprint(config.annotate.metrics)
    limit = config.annotate.metrics.batch_size
    chunks: list[tuple[int, list[MetricTask]]] = []
    members: list[Any] = []
    size, index, waiting = 0, 0, 0

    def close() -> None:
        nonlocal members, size, index, waiting
        if members:
            if all(stored is not None for stored in members):
                chunks.append((index, [_task(r, fp, run) for stored in members for r in stored]))
            else:
                waiting += len(members)
            index += 1
        members, size = [], 0

    for _, planned, stored in prompt_images(config, run):
        if members and size + planned > limit:
            close()
        members.append(stored)
        size += planned
    close()
    return chunks, waiting


# --------------------------------------------------------------------------------------------- questions
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "choices": {"type": "array", "items": {"type": "string"}},
                    "answer": {"type": "string"},
                    "element_type": {"type": "string"},
                    "element": {"type": "string"},
                },
                "required": ["question", "choices", "answer", "element_type", "element"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["questions"],
    "additionalProperties": False,
}


def validate_questions(text: str) -> list[dict[str, Any]]:
    from ..llm import InvalidAnswer, extract_json

    data = extract_json(text)
    rows = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise InvalidAnswer('expected {"questions": [...]} with at least one question')
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) and row[k].strip()
            for k in ("question", "answer", "element_type", "element")
        ):
            raise InvalidAnswer(
                f"question {i}: question, answer, element_type and element must be non-empty strings"
            )
        choices = row.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or row["answer"] not in choices:
            raise InvalidAnswer(f"question {i}: choices must list at least two options including the answer")
        if row["element_type"] not in ELEMENT_TYPES:
            raise InvalidAnswer(
                f"question {i}: element_type {row['element_type']!r} is not one of {', '.join(ELEMENT_TYPES)}"
            )
        out.append({k: row[k] for k in ("question", "choices", "answer", "element_type", "element")})
    return out


def question_messages(prompt: str) -> list[dict[str, Any]]:
    from ..resources import data_path

    instructions = data_path("annotation_guides/question_generation.md").read_text(encoding="utf-8")
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": json.dumps({"prompt": prompt}, ensure_ascii=False)},
    ]


# --------------------------------------------------------------------------------------------- stage
def annotate_with_metrics(
    config: BuildConfig,
    run: RunDir,
    *,
    retry_failed: bool,
    progress: bool,
    proc: ProcessInfo,
    calibrate: Any = None,
) -> Any:
    """Score every chunk of this rank that is not done (nor blocked). ``calibrate(config, run)`` is the
    calibration gate (:func:`~visionprefer.annotate.calibration.calibrate_metrics`, passed in by the stage),
    applied before anything of the build is scored when ``annotate.metrics.calibration`` is set."""
    from ..progress import progress_bar
    from .common import AnnotateReport

    chunks, waiting = metric_chunks(config, run)
    tasks = [t for _, chunk in chunks for t in chunk]
    log = run.stage_log(STAGE, KEY, proc.rank)
    state = log.keys_state()  # finished keys only, not their records
    blocked = state.blocked(retry_failed)
    report = AnnotateReport(backend="metrics", planned=len(tasks), waiting=waiting)
    report.done_before = sum(1 for t in tasks if t.annotation_id in state.done)
    report.blocked = sum(1 for t in tasks if t.annotation_id in blocked and t.annotation_id not in state.done)

    def missing(chunk: list[MetricTask]) -> list[MetricTask]:
        return [t for t in chunk if t.annotation_id not in state.done and t.annotation_id not in blocked]

    if (
        calibrate is not None
        and config.annotate.metrics.calibration is not None
        and any(missing(chunk) for _, chunk in chunks)
    ):
        # The gate before the main annotation, as the judge's: rank 0 measures (or reads the recorded
        # result), then every rank checks the record, so that all stop together below min_accuracy.
        from ..errors import CalibrationFailed

        if proc.is_main:
            with contextlib.suppress(CalibrationFailed):
                calibrate(config, run)
        proc.barrier()
        report.calibration = calibrate(config, run)  # recorded: nothing is scored again

    mine = [chunk for i, chunk in chunks if i % proc.world_size == proc.rank and missing(chunk)]
    if not mine:
        return report

    # Questions for every prompt of the chunks (a finished image's too: its chunk is scored whole).
    questions, question_failures = _questions_for(
        config, run, sorted({t.prompt for chunk in mine for t in chunk}), proc, retry_failed=retry_failed
    )
    scorers = _Scorers(config, run, proc)
    try:
        with progress_bar(
            total=sum(len(missing(c)) for c in mine),
            desc="annotate",
            unit="img",
            enabled=progress and proc.is_main,
        ) as bar:
            for chunk in mine:
                todo = missing(chunk)
                wanted = {t.annotation_id for t in todo}
                usable = [t for t in chunk if t.prompt in questions]
                for t in todo:
                    if t.prompt not in questions:
                        why = question_failures.get(t.prompt)
                        log.record_failed(
                            [t.annotation_id],
                            reason=f"questions: {why.error if why else 'no valid questions for the prompt'}",
                            kind="permanent" if why is not None and why.kind == "permanent" else "transient",
                            raw=why.text if why else None,
                            failure_kind=why.failure_kind if why else "schema",
                        )
                        report.failed += 1
                try:
                    records = scorers.score(usable, questions) if usable else []
                except (RuntimeError, OSError, ValueError) as e:
                    reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                    cause = getattr(e, "failure_kind", None) or (
                        "image_unreadable"
                        if classify_failure(reason) == "image_unreadable"
                        else "model_error"
                    )
                    failed = [t.annotation_id for t in usable if t.annotation_id in wanted]
                    log.record_failed(failed, reason=reason, kind="transient", failure_kind=cause)
                    report.failed += len(failed)
                    report.failures[reason] = report.failures.get(reason, 0) + len(failed)
                    bar.update(len(todo))
                    continue
                records = [r for r in records if r["annotation_id"] in wanted]
                log.record_done(records)
                report.made += len(records)
                bar.update(len(todo))
    finally:
        log.close()
        scorers.close()
    return report


def _questions_for(
    config: BuildConfig,
    run: RunDir,
    prompts: list[str],
    proc: ProcessInfo,
    *,
    retry_failed: bool = False,
    purpose: str = "questions",
) -> tuple[dict[str, list], dict[str, Any]]:
    """Per prompt, its questions; and per prompt whose question writing failed, the failed LLMResult. With
    ``retry_failed``, a prompt whose cached answers fail permanently is asked again (the cache ignored), as
    the judge and polishing do. ``purpose``: the usage log's name for the calls (and their budget)."""
    mc = config.annotate.metrics
    if mc.questions == "template":
        from ..scorers import template_questions

        return {p: template_questions(p) for p in prompts}, {}
    from ..llm import LLMClient, chat_request, run_bounded

    out: dict[str, list] = {}
    failures: dict[str, Any] = {}
    budget = False

    async def main() -> None:
        nonlocal budget
        llm = LLMClient(
            mc.question_llm,
            folder=run.llm_dir,
            purpose=purpose,
            prices=config.prices,
            rank=proc.rank,
            ranks=proc.world_size,
        )

        async def one(prompt: str) -> Any:
            request = chat_request(
                mc.question_llm, question_messages(prompt), schema=QUESTION_SCHEMA, schema_name="questions"
            )
            result = await llm.call(request, validate=validate_questions)
            if not result.ok and result.kind == "permanent" and retry_failed:
                result = await llm.call(request, validate=validate_questions, refresh=True)
            return result

        def done(prompt: str, result: Any) -> None:
            nonlocal budget
            if result.ok:
                out[prompt] = result.value
            else:
                failures[prompt] = result
            budget |= result.kind == "budget"

        async with llm:
            await run_bounded(prompts, one, done, workers=2 * llm.concurrency)

    asyncio.run(main())
    if budget:
        raise BudgetExceeded(
            f"{purpose}: annotate.metrics.question_llm.max_cost_usd reached while writing questions; raise it "
            "and rerun"
        )
    return out, failures


def scorer_settings(config: BuildConfig) -> Any:
    """The :class:`~visionprefer.scorers.factory.ScorerSettings` of ``annotate.metrics`` (the same factory
    ``eval score`` builds its scorers with)."""
    from ..scorers.factory import ScorerSettings

    mc = config.annotate.metrics
    settings = ScorerSettings(
        device=mc.device,
        batch_size=mc.batch_size,
        clip_model=mc.clip_model,
        aesthetic_model=mc.aesthetic_model,
        aesthetic_clip_model=mc.aesthetic_clip_model,
        vqa_model=mc.vqa_model,
        cq_threshold=mc.cq_threshold,
        pickscore_processor=mc.pickscore_processor,
        hpsv2_checkpoint=config.resolve_path(mc.hpsv2_checkpoint) if mc.hpsv2_checkpoint else None,
    )
    # The optional models are off (None) in the config; the settings keep their defaults then.
    optional = {
        "cq_model": mc.cq_model,
        "pickscore_model": mc.pickscore_model,
        "hpsv2_version": mc.hpsv2_version,
    }
    return settings.replace(**{k: v for k, v in optional.items() if v})


class _Scorers:
    """The metric models, each loaded once for the stage. ``vqa_purpose``: the usage log's name for the
    VLM's answers (``vqa_backend: vlm``)."""

    def __init__(self, config: BuildConfig, run: RunDir, proc: ProcessInfo, *, vqa_purpose: str = "vqa"):
        from ..scorers.factory import build_scorers

        mc = config.annotate.metrics
        self.config, self.run, self.proc, self.mc = config, run, proc, mc
        self.vqa_purpose = vqa_purpose
        names = ["clip", "aesthetic"]  # in this order: the aesthetic head reuses the CLIP model
        names += ["vqa"] if mc.vqa_backend == "blip" else []
        names += ["cq"] if mc.cq_model else []
        names += ["pickscore"] if mc.pickscore_model else []
        names += ["hpsv2"] if mc.hpsv2_version else []
        built = build_scorers(names, scorer_settings(config))
        self.clip, self.aesthetic = built["clip"], built["aesthetic"]
        self.vqa = built.get("vqa")
        self.cq = built.get("cq")
        # Reward models: name -> (scorer, factor to the reported scale); HPS is reported as 100 x cosine.
        factors = {"pickscore": 1.0, "hpsv2": 100.0}
        self.rewards: dict[str, Any] = {n: (built[n], f) for n, f in factors.items() if n in built}

    def score(self, tasks: list[MetricTask], questions: dict[str, list]) -> list[dict[str, Any]]:
        """The annotate records of ``tasks`` (their image files scored in one batch)."""
        from PIL import Image

        images = []
        for t in tasks:
            with Image.open(t.file) as im:
                images.append(im.convert("RGB"))
        measured = self.measure([t.prompt for t in tasks], images, questions)
        return [
            {
                "annotation_id": t.annotation_id,
                "image_id": t.image_id,
                "prompt_id": t.prompt_id,
                "backend": "metrics",
                **m,
            }
            for t, m in zip(tasks, measured, strict=True)
        ]

    def measure(self, prompts: list[str], images: list, questions: dict[str, list]) -> list[dict[str, Any]]:
        """Per image (RGB, in one batch), its raw ``metrics`` and the VQA ``questions``, ``expected`` and
        ``answers``; every prompt needs its questions in ``questions``."""
        from ..scorers import vqa_score

        emb = self.clip.image_embeddings(images)
        clip = self.clip.score_embeddings(emb, self.clip.text_embeddings(list(prompts)))
        if self.aesthetic.clip is self.clip:
            aesthetic = self.aesthetic.score_embeddings(emb)
        else:
            aesthetic = self.aesthetic.image_scores(images)
        flat_images, flat_questions, spans = [], [], []
        for image, prompt in zip(images, prompts, strict=True):
            qs = questions[prompt]
            spans.append((len(flat_questions), len(flat_questions) + len(qs)))
            flat_images += [image] * len(qs)
            flat_questions += [q["question"] for q in qs]
        answers = self._answer(flat_images, flat_questions)
        cq: list[float | None] = [None] * len(prompts)
        if self.cq is not None:  # NaN (no detectable object named in the prompt) is stored as null
            cq = [None if math.isnan(v) else float(v) for v in self.cq.score(list(prompts), images)]
        rewards = {
            name: [factor * float(v) for v in scorer.score(list(prompts), images)]
            for name, (scorer, factor) in self.rewards.items()
        }
        out = []
        for i, prompt in enumerate(prompts):
            a, b = spans[i]
            qs = questions[prompt]
            out.append(
                {
                    "metrics": {
                        "vqa": float(vqa_score(answers[a:b], qs)),
                        "clip": float(clip[i]),
                        "aesthetic": float(aesthetic[i]),
                        "cq": cq[i],
                        **{name: values[i] for name, values in rewards.items()},
                    },
                    "questions": [q["question"] for q in qs],
                    "expected": [q["answer"] for q in qs],
                    "answers": answers[a:b],
                }
            )
        return out

    def _answer(self, images: list, questions: list[str]) -> list[str]:
        if self.vqa is not None:
            return self.vqa.answer(images, questions)
        return asyncio.run(self._answer_vlm(images, questions))

    async def _answer_vlm(self, images: list, questions: list[str]) -> list[str]:
        import base64
        import io

        from ..llm import LLMClient, chat_request, run_bounded

        mc = self.mc
        vlm = mc.vqa_llm
        if vlm is None:
            from ..errors import ConfigError

            raise ConfigError(
                "annotate.metrics.vqa_llm: vqa_backend 'vlm' needs the VLM endpoint (model, base_url)"
            )
        answers: list[str | None] = [None] * len(questions)
        llm = LLMClient(
            vlm,
            folder=self.run.llm_dir,
            purpose=self.vqa_purpose,
            prices=self.config.prices,
            rank=self.proc.rank,
            ranks=self.proc.world_size,
        )
        urls: dict[int, str] = {}
        for image in images:
            if id(image) not in urls:
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                urls[id(image)] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

        async def one(i: int) -> Any:
            messages = [
                {
                    "role": "system",
                    "content": "Answer the question about the image with one word or a number.",
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": questions[i]},
                        {"type": "image_url", "image_url": {"url": urls[id(images[i])]}},
                    ],
                },
            ]
            return await llm.call(chat_request(vlm, messages), validate=lambda text: text.strip().lower())

        def done(i: int, result: Any) -> None:
            if not result.ok:
                raise VQAFailed(f"VQA answer failed: {result.error}", result.failure_kind)
            answers[i] = result.value

        async with llm:
            await run_bounded(range(len(questions)), one, done, workers=2 * llm.concurrency)
        return [a or "" for a in answers]

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------- feedback view
def metric_total(metrics: dict[str, float | None], weights: dict[str, float]) -> float:
    return float(sum(w * metrics[name] for name, w in weights.items() if metrics.get(name) is not None))


def metric_feedback(config: BuildConfig, run: RunDir, done: LogIndex) -> dict[str, dict[str, Any]]:
    """Per annotated image, its feedback columns; ``done`` indexes the annotate stage's done logs."""
    tasks, _ = metric_tasks(config, run)
    tasks = [t for t in tasks if t.annotation_id in done]
    weights = config.annotate.metrics.weights
    out: dict[str, dict[str, Any]] = {}
    for t, rec in zip(tasks, done.records(t.annotation_id for t in tasks), strict=True):
        metrics = {name: rec["metrics"].get(name) for name in METRICS}
        total = metric_total(metrics, weights)
        out[t.image_id] = {
            "prompt_id": t.prompt_id,
            "judge": "metrics",
            "guide_version": None,
            "metrics": {**metrics, "total": total},
            "overall": total,
            **dict.fromkeys(("prompt_following", "fidelity", "aesthetic", "harmlessness")),
        }
    return out


# --------------------------------------------------------------------------------------------- estimate
QUESTIONS_PER_PROMPT_GUESS = 8  # for estimates before an LLM has written a prompt's questions
TOKENS_PER_QUESTION = 45  # one question record (question, choices, answer, element type, element) as JSON


def estimate_metrics_llm(
    config: BuildConfig, images_per_prompt: dict[str, int], folder: Any
) -> dict[str, dict[str, Any]]:
    """LLM calls, tokens and dollars of metric feedback still to pay: question writing (``questions: llm``,
    one call per distinct prompt text) and VLM answers (``vqa_backend: vlm``, one call per image and
    question). ``images_per_prompt`` maps prompt text -> planned images. Answers already in the response
    cache (``folder``) are free. Question counts come from the template, from cached LLM questions, or are
    assumed to be 8 per prompt."""
    from ..llm import InvalidAnswer, chat_request, estimate_tokens
    from ..llm.cache import ResponseCache, request_key
    from ..llm.usage import cost_usd, price_for, round_usd
    from ..scorers import template_questions

    mc = config.annotate.metrics
    out: dict[str, dict[str, Any]] = {}
    cache = ResponseCache(folder) if folder.exists() else None
    n_questions: dict[str, int] = {}
    if mc.questions == "llm":
        price = price_for(mc.question_llm.model, config.prices)
        row = {"calls": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0}
        for prompt in images_per_prompt:
            request = chat_request(
                mc.question_llm, question_messages(prompt), schema=QUESTION_SCHEMA, schema_name="questions"
            )
            entry = cache.get(request_key(request)) if cache is not None else None
            if entry is not None:
                row["cached"] += 1
                with contextlib.suppress(InvalidAnswer, KeyError, TypeError):  # invalid: re-asked, guessed
                    n_questions[prompt] = len(validate_questions(entry["text"]))
                continue
            tokens_in = estimate_tokens(request)
            tokens_out = min(mc.question_llm.max_tokens, QUESTIONS_PER_PROMPT_GUESS * TOKENS_PER_QUESTION)
            row["calls"] += 1
            row["input_tokens"] += tokens_in
            row["output_tokens"] += tokens_out
            row["usd"] += cost_usd(price, tokens_in, tokens_out)
        row["usd"] = round_usd(row["usd"])
        row["price_known"] = price is not None
        out["questions"] = row
    else:
        n_questions = {p: len(template_questions(p)) for p in images_per_prompt}
    if mc.vqa_backend == "vlm" and mc.vqa_llm is not None:
        vlm = mc.vqa_llm
        price = price_for(vlm.model, config.prices)
        image_tokens = 765  # one image at detail "auto" (the request sets none), as estimate_tokens counts it
        calls = sum(n * n_questions.get(p, QUESTIONS_PER_PROMPT_GUESS) for p, n in images_per_prompt.items())
        tokens_in = calls * (image_tokens + 40)
        tokens_out = calls * 4  # a word or a number
        out["vqa"] = {
            "calls": calls,
            "cached": 0,  # VQA requests carry the image bytes: not looked up before the images exist
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "usd": round_usd(cost_usd(price, tokens_in, tokens_out)),
            "price_known": price is not None,
        }
    if cache is not None:
        cache.close()
    return out


# --------------------------------------------------------------------------------------------- as a scorer
class WeightedTotal:
    """Metric feedback's weighted total as a scorer (``.score(prompts, images)``, one float per image): the
    raw metrics measured by the build's own models (:class:`_Scorers`) and weighted by :func:`metric_total`
    with ``annotate.metrics.weights``, so that an image scores exactly the ``overall`` a build with the same
    config stores for it. ``questions`` maps each prompt to its questions (:func:`metric_scorer` writes
    them); a prompt without any (their writing failed) or whose VLM answers failed scores NaN (unscored)."""

    higher_is_better = True

    def __init__(
        self, config: BuildConfig, run: RunDir, questions: dict[str, list], *, vqa_purpose: str = "vqa"
    ):
        self.questions = questions
        self.weights = config.annotate.metrics.weights
        self.scorers = _Scorers(config, run, ProcessInfo(), vqa_purpose=vqa_purpose)

    def score(self, prompts: Any, images: Any) -> Any:
        import numpy as np

        prompts, images = list(prompts), list(images)
        out = np.full(len(prompts), np.nan)
        usable = [i for i, p in enumerate(prompts) if p in self.questions]
        if not usable:
            return out
        try:
            measured = self.scorers.measure(
                [prompts[i] for i in usable], [images[i] for i in usable], self.questions
            )
        except VQAFailed as e:
            if e.failure_kind == "budget":
                raise BudgetExceeded(
                    f"{self.scorers.vqa_purpose}: annotate.metrics.vqa_llm.max_cost_usd reached while "
                    "answering the VQA questions; raise it and rerun (answers so far are cached)"
                ) from None
            return out  # unscored, as the build leaves such images unannotated
        for i, m in zip(usable, measured, strict=True):
            out[i] = metric_total(m["metrics"], self.weights)
        return out


def images_per_prompt(items: Any) -> dict[str, int]:
    """Prompt text -> number of images, over test-set items (anything with ``prompt`` and ``images``)."""
    out: dict[str, int] = {}
    for item in items:
        out[item.prompt] = out.get(item.prompt, 0) + len(item.images)
    return out


def metric_scorer(
    config: BuildConfig,
    run: RunDir,
    images_per_prompt: dict[str, int],
    *,
    purposes: tuple[str, str] = ("questions", "vqa"),
) -> tuple[WeightedTotal, dict[str, dict[str, Any]]]:
    """Metric feedback's weighted total (:class:`WeightedTotal`) for the images of ``images_per_prompt``
    (prompt text -> images to score), outside a build: ``eval agreement --metrics`` and the metrics
    calibration gate. As in the build, the LLM calls go through the LLM layer with ``run.llm_dir``'s
    response cache and usage log, under ``purposes`` (question writing, VLM answers). Their cost is
    estimated first (:func:`estimate_metrics_llm`, as ``visionprefer estimate`` does) and nothing is asked
    when it is above the role's ``max_cost_usd``; the LLM layer then stops at that budget. Returns the
    scorer and the estimate."""
    from ..llm.usage import usage_totals

    mc = config.annotate.metrics
    estimate = estimate_metrics_llm(config, images_per_prompt, run.llm_dir)
    spent = usage_totals(run.llm_dir) if run.llm_dir.exists() else {}
    for role, purpose, llm, name in (
        ("questions", purposes[0], mc.question_llm, "question_llm"),
        ("vqa", purposes[1], mc.vqa_llm, "vqa_llm"),
    ):
        row = estimate.get(role)
        if row is None or llm is None or llm.max_cost_usd is None:
            continue
        # Question writing is estimated net of the cache: held against what the budget leaves. VLM answers
        # are not looked up (the estimate counts those paid before again): held against the whole budget.
        paid = spent.get(purpose, {}).get("usd", 0.0) if role == "questions" else 0.0
        if row["usd"] > llm.max_cost_usd - paid:
            raise BudgetExceeded(
                f"{purpose}: {row['calls']} calls estimated at ${row['usd']:.4f}, more than the "
                f"${max(0.0, llm.max_cost_usd - paid):.4f} annotate.metrics.{name}.max_cost_usd "
                f"{'leaves' if paid else 'allows'}; nothing was asked (raise it, or score fewer images)"
            )
    questions, _ = _questions_for(config, run, sorted(images_per_prompt), ProcessInfo(), purpose=purposes[0])
    return WeightedTotal(config, run, questions, vqa_purpose=purposes[1]), estimate
