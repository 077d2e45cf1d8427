"""The generate stage: make every planned image that is not on disk yet.

Each process takes the chunks whose plan index equals its rank modulo the world size, loads one model at a
time, and for every chunk with a missing image calls the pipeline on the whole chunk. Each image is written
atomically to ``images/<ab>/<image_id>.<ext>``, then its record (metadata + sha256) is appended to the
process's own ``generate/done-rank<R>.jsonl``. A chunk that raises is recorded as failed for its missing
images (transient: retried on the next run; permanent: only with ``--retry-failed``) and the stage goes on.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import BuildConfig
from ..dist import ProcessInfo, process_info
from ..progress import progress_bar
from ..prompts.stage import load_prompts
from ..rundir import RunDir, StageState, atomic_write_bytes
from .plan import Chunk, GeneratorSpec, plan_images, resolve_generators

log = logging.getLogger(__name__)

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
STAGE = "generate"
KEY = "image_id"

GeneratorLoader = Callable[[GeneratorSpec], Any]


@dataclass
class GenerateReport:
    planned: int = 0
    done_before: int = 0
    made: int = 0
    failed: int = 0
    blocked: int = 0
    chunks_run: int = 0
    failures: dict[str, int] = field(default_factory=dict)


def encode_image(image: Any, fmt: str, quality: int) -> bytes:
    """Encode a PIL image; PNG is lossless, JPEG/WebP use ``quality``. Same pixels give the same bytes."""
    buf = io.BytesIO()
    image = image.convert("RGB")
    if fmt == "png":
        image.save(buf, format="PNG")
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="WEBP", quality=quality)
    return buf.getvalue()


def failure_kind(exc: BaseException) -> str:
    """Transient failures are retried on the next run; permanent ones only with --retry-failed."""
    return "permanent" if isinstance(exc, (ValueError, TypeError)) else "transient"


def generation_state(run: RunDir) -> StageState:
    """Finished and failed images; a record whose image file has vanished counts as missing."""
    state = run.stage_log(STAGE, KEY).state()
    for key in [k for k, rec in state.done.items() if not (run.root / rec["file"]).exists()]:
        del state.done[key]
    return state


def plan_for_run(config: BuildConfig, run: RunDir) -> list[Chunk]:
    return plan_images(load_prompts(run), config.generate)


def generate_images(
    config: BuildConfig,
    run: RunDir,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    load_generator: GeneratorLoader | None = None,
    proc: ProcessInfo | None = None,
) -> GenerateReport:
    """Run the generate stage for this process's share of the plan."""
    gc = config.generate
    proc = proc or process_info()
    chunks = plan_for_run(config, run)
    state = generation_state(run)
    blocked = state.blocked(retry_failed)
    report = GenerateReport(planned=sum(len(c.tasks) for c in chunks))
    report.done_before = sum(1 for c in chunks for i in c.image_ids if i in state.done)
    report.blocked = sum(1 for c in chunks for i in c.image_ids if i in blocked and i not in state.done)
    mine = [
        c
        for c in chunks
        if c.index % proc.world_size == proc.rank
        and any(i not in state.done and i not in blocked for i in c.image_ids)
    ]
    stage_log = run.stage_log(STAGE, KEY, proc.rank)
    specs = {s.name: s for s in resolve_generators(gc)}
    if load_generator is None:
        from .diffusers_backend import DiffusersTextToImage

        def load_generator(spec: GeneratorSpec) -> Any:
            return DiffusersTextToImage(spec, device=gc.device, vae_slicing=gc.vae_slicing)

    ext = EXTENSIONS[gc.image_format]
    missing_total = sum(1 for c in mine for i in c.image_ids if i not in state.done)
    with progress_bar(
        total=missing_total,
        desc=f"generate[rank {proc.rank}]" if proc.world_size > 1 else "generate",
        unit="img",
        enabled=progress and proc.is_main,
    ) as bar:
        for name in specs:  # one model in memory at a time, in config order
            todo = [c for c in mine if c.generator == name]
            if not todo:
                continue
            spec = specs[name]
            generator = load_generator(spec)
            try:
                for chunk in todo:
                    _run_chunk(
                        chunk,
                        spec,
                        generator,
                        run,
                        stage_log,
                        state,
                        gc.image_format,
                        gc.image_quality,
                        ext,
                        report,
                        bar,
                        proc.rank,
                    )
            finally:
                close = getattr(generator, "close", None)
                if close:
                    close()
    proc.barrier()
    return report


def _run_chunk(
    chunk: Chunk,
    spec: GeneratorSpec,
    generator: Any,
    run: RunDir,
    stage_log: Any,
    state: StageState,
    fmt: str,
    quality: int,
    ext: str,
    report: GenerateReport,
    bar: Any,
    rank: int,
) -> None:
    missing = [t for t in chunk.tasks if t.image_id not in state.done]
    try:
        images = generator(
            [t.prompt for t in chunk.tasks],
            guidance_scale=chunk.guidance_scale,
            seeds=[t.seed for t in chunk.tasks],
        )
        if len(images) != len(chunk.tasks):
            raise RuntimeError(f"generator returned {len(images)} images for {len(chunk.tasks)} prompts")
    except Exception as e:  # recorded per item; KeyboardInterrupt and SystemExit still stop the run
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(
            ": "
        )
        kind = failure_kind(e)
        log.warning(
            "chunk %d (%s, cfg %s) failed: %s", chunk.index, chunk.generator, chunk.guidance_scale, reason
        )
        stage_log.record_failed([t.image_id for t in missing], reason=reason, kind=kind)
        report.failed += len(missing)
        report.failures[reason] = report.failures.get(reason, 0) + len(missing)
        bar.update(len(missing))
        return
    records = []
    for task, image in zip(chunk.tasks, images, strict=True):
        if task.image_id in state.done:
            continue  # made by an earlier run in this very call layout: same bytes, keep the file
        data = encode_image(image, fmt, quality)
        path = run.image_path(task.image_id, ext)
        atomic_write_bytes(path, data)
        records.append(
            {
                "image_id": task.image_id,
                "prompt_id": task.prompt_id,
                "prompt": task.prompt,
                "generator": spec.generator_column,
                "generator_name": spec.name,
                "model_id": spec.model_id,
                "revision": spec.revision,
                "pipeline": generator.pipeline_name,
                "scheduler": generator.scheduler_name,
                "steps": spec.steps,
                "guidance_scale": task.guidance_scale,
                "seed": task.seed,
                "sample_index": task.sample_index,
                "height": image.height,
                "width": image.width,
                "dtype": generator.dtype_name,
                "file": str(path.relative_to(run.root)),
                "format": fmt,
                "image_sha256": hashlib.sha256(data).hexdigest(),
                "chunk": chunk.index,
                "rank": rank,
            }
        )
    stage_log.record_done(records)
    for rec in records:
        state.done[rec["image_id"]] = rec
    report.made += len(records)
    report.chunks_run += 1
    bar.update(len(records))
