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
from ..rundir import LogIndex, RunDir, StageState, StoredRecords, atomic_write_bytes
from .plan import Chunk, GeneratorSpec, ImageTask, plan_images, resolve_generators

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


def failure_cause(exc: BaseException) -> str:
    """The failure kind (``errors.FAILURE_KINDS``) of a generation error: a bad input or setting for the
    item (ValueError/TypeError) or an error of the model (out of memory, a device error, ...)."""
    return "invalid_input" if isinstance(exc, (ValueError, TypeError)) else "model_error"


def generation_state(run: RunDir) -> StageState:
    """Finished and failed images; a record whose image file has vanished counts as missing."""
    state = run.stage_log(STAGE, KEY).state()
    for key in [k for k, rec in state.done.items() if not _image_on_disk(run, rec)]:
        del state.done[key]
    return state


def _image_on_disk(run: RunDir, rec: dict[str, Any]) -> bool:
    return (run.root / rec["file"]).exists()


def generation_index(run: RunDir) -> LogIndex:
    """``generation_state(run).done`` as a :class:`~visionprefer.rundir.LogIndex`: the same image ids, with
    the address of each record instead of the record (about 120 bytes per image instead of some 2.8 KB),
    for readers that go over a large run (``publish``, ``status``) and need few records at a time."""
    return run.stage_log(STAGE, KEY).done_index(keep=lambda rec: _image_on_disk(run, rec))


def generation_failures(run: RunDir, index: LogIndex) -> dict[str, dict[str, Any]]:
    """``generation_state(run).failed``, given ``index = generation_index(run)``."""
    return run.stage_log(STAGE, KEY).failures(index.has_record)


def stored_prompts(run: RunDir) -> StoredRecords:
    """``load_prompts(run)`` left on disk (8 bytes per prompt; see :class:`~visionprefer.rundir.StoredRecords`)."""
    if not run.prompts_file.exists():
        load_prompts(run)  # raises the stage-order error ("run `visionprefer prompts CONFIG` first")
    return StoredRecords.of_file(run.prompts_file)


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
    # Ids only (not the records: some 2.8 KB an image); the runner adds the images it makes.
    state = run.stage_log(STAGE, KEY).keys_state(keep=lambda rec: _image_on_disk(run, rec))
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

    missing_total = sum(1 for c in mine for i in c.image_ids if i not in state.done)
    with (
        progress_bar(
            total=missing_total,
            desc=f"generate[rank {proc.rank}]" if proc.world_size > 1 else "generate",
            unit="img",
            enabled=progress and proc.is_main,
        ) as bar,
        _ChunkRunner(
            run, stage_log, state, gc.image_format, gc.image_quality, report, bar, proc.rank
        ) as runner,
    ):
        for name in specs:  # one model in memory at a time, in config order
            todo = [c for c in mine if c.generator == name]
            if not todo:
                continue
            spec = specs[name]
            generator = load_generator(spec)
            try:
                for chunk in todo:
                    runner.run(chunk, spec, generator)
                runner.drain()
            finally:
                close = getattr(generator, "close", None)
                if close:
                    close()
    stage_log.close()
    proc.launch_totals(report, ("made", "failed", "chunks_run"))  # the whole launch's counts, on every rank
    return report


def generation_record(
    task: ImageTask,
    spec: GeneratorSpec,
    *,
    pipeline: str,
    scheduler: str,
    dtype: str,
    size: tuple[int, int],
    file: str,
    fmt: str,
    sha256: str,
    chunk: int,
    rank: int,
) -> dict[str, Any]:
    """The done-log record of one finished image (``size`` is width, height; ``file`` is relative to the
    run directory): the one place its fields are laid out, for the stage and for tools that build runs."""
    return {
        "image_id": task.image_id,
        "prompt_id": task.prompt_id,
        "prompt": task.prompt,
        "generator": spec.generator_column,
        "generator_name": spec.name,
        "model_id": spec.model_id,
        "revision": spec.revision,
        "pipeline": pipeline,
        "scheduler": scheduler,
        "steps": spec.steps,
        "guidance_scale": task.guidance_scale,
        "seed": task.seed,
        "sample_index": task.sample_index,
        "height": size[1],
        "width": size[0],
        "dtype": dtype,
        "file": file,
        "format": fmt,
        "image_sha256": sha256,
        "chunk": chunk,
        "rank": rank,
    }


class _ChunkRunner:
    """Runs chunks through a generator and stores their images.

    Encoding, hashing and writing a chunk happen on one writer thread while the next chunk is generated
    (PNG encoding releases the GIL; on a GPU it would otherwise stall the device between calls). At most one
    chunk waits to be written. A record is still appended only after its image file is on disk.
    """

    def __init__(
        self,
        run: RunDir,
        stage_log: Any,
        state: StageState,
        fmt: str,
        quality: int,
        report: GenerateReport,
        bar: Any,
        rank: int,
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.run_dir, self.stage_log, self.state = run, stage_log, state
        self.fmt, self.quality, self.ext = fmt, quality, EXTENSIONS[fmt]
        self.report, self.bar, self.rank = report, bar, rank
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visionprefer-writer")
        self._pending: Any = None

    def __enter__(self) -> _ChunkRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                self.drain()
            elif self._pending is not None:
                self._pending.exception()  # let the last chunk finish writing; its error is secondary
        finally:
            self._writer.shutdown(wait=True)

    def drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a writer error here

    def run(self, chunk: Chunk, spec: GeneratorSpec, generator: Any) -> None:
        missing = [t for t in chunk.tasks if t.image_id not in self.state.done]
        try:
            images = generator(
                [t.prompt for t in chunk.tasks],
                guidance_scale=chunk.guidance_scale,
                seeds=[t.seed for t in chunk.tasks],
                sample_indices=[t.sample_index for t in chunk.tasks],
            )
            if len(images) != len(chunk.tasks):
                raise RuntimeError(f"generator returned {len(images)} images for {len(chunk.tasks)} prompts")
        except Exception as e:  # recorded per item; KeyboardInterrupt and SystemExit still stop the run
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            reason = f"{type(e).__name__}: {message}".rstrip(": ")
            log.warning(
                "chunk %d (%s, cfg %s) failed: %s", chunk.index, chunk.generator, chunk.guidance_scale, reason
            )
            self.stage_log.record_failed(
                [t.image_id for t in missing],
                reason=reason,
                kind=failure_kind(e),
                failure_kind=failure_cause(e),
            )
            self.report.failed += len(missing)
            self.report.failures[reason] = self.report.failures.get(reason, 0) + len(missing)
            self.bar.update(len(missing))
            return
        meta = (generator.pipeline_name, generator.scheduler_name, generator.dtype_name)
        self.drain()
        self._pending = self._writer.submit(self._write, chunk, spec, meta, missing, images)

    def _write(
        self, chunk: Chunk, spec: GeneratorSpec, meta: tuple[str, str, str], missing: list, images: list
    ) -> None:
        pipeline, scheduler, dtype = meta
        wanted = {t.image_id for t in missing}
        records = []
        for task, image in zip(chunk.tasks, images, strict=True):
            if task.image_id not in wanted:
                continue  # made by an earlier run in this very call layout: same bytes, keep the file
            data = encode_image(image, self.fmt, self.quality)
            path = self.run_dir.image_path(task.image_id, self.ext)
            atomic_write_bytes(path, data)
            records.append(
                generation_record(
                    task,
                    spec,
                    pipeline=pipeline,
                    scheduler=scheduler,
                    dtype=dtype,
                    size=(image.width, image.height),
                    file=str(path.relative_to(self.run_dir.root)),
                    fmt=self.fmt,
                    sha256=hashlib.sha256(data).hexdigest(),
                    chunk=chunk.index,
                    rank=self.rank,
                )
            )
        self.stage_log.record_done(records)
        self.state.done.update(rec["image_id"] for rec in records)  # a set of ids (see generate_images)
        self.report.made += len(records)
        self.report.chunks_run += 1
        self.bar.update(len(records))
