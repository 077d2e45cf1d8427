"""``visionprefer train-reward``: fine-tune a CLIP-family model on a visionprefer pairs dataset.

Stack: ``accelerate`` (``Accelerator(cpu=...)``: the same command runs under ``torchrun``/``accelerate
launch``; DDP averages the gradients), gradient accumulation (``no_sync`` on all but the last micro-batch),
mixed precision only on CUDA (``auto``: bf16 where supported, else fp16; none on CPU), AdamW, a
``transformers`` LR schedule stepped once per optimizer step, gradient clipping.

Output folder (``output_dir``)::

    reward_run.json                   marker: config, fingerprint, finished
    metrics.jsonl                     one line per optimizer step (loss, lr, pairs/s) and per validation
    checkpoints/checkpoint-<step>/    state.pt (model, optimizer, scheduler), rng-rank<R>.pt, trainer.json
    checkpoints/best-<step>/model.pt  the weights of the best validation so far
    config.json, model.safetensors, processor files, README.md   the result (written at the end)

Determinism and resume: the pairs of a step depend only on the step (``data.GlobalOrder``), so a checkpoint
holds the whole position in the data as one number. A checkpoint is written to a temporary folder, fsynced
and renamed; ``metrics.jsonl`` is truncated on resume to its size at the checkpoint. After ``kill -9`` the
same command resumes from the last checkpoint and ends with the same weights as an uninterrupted run.
Validation runs at step 0 (the base model), every ``eval_every`` steps and at the end; the result is the
best validation accuracy (ties: lower loss, then the earlier step), or the last step without validation.
The checkpoints are removed once the result is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunDirError
from .config import RewardConfig

log = logging.getLogger(__name__)

MARKER = "reward_run.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    resumed_from: int | None
    validation_accuracy_before: float | None
    validation_accuracy: float | None  # of the selected (best) step
    best_step: int
    sizes: dict[str, int]
    validation_source: str
    already_done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers
def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _save(obj: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if p.name.startswith("checkpoint-") and (p / "trainer.json").is_file():
            out.append((int(p.name.split("-")[1]), p))
    return sorted(out)


def _mixed_precision(cfg: RewardConfig, cuda: bool) -> str:
    if not cuda:
        if cfg.mixed_precision in ("fp16", "bf16"):
            raise ConfigError(
                f"reward.mixed_precision: {cfg.mixed_precision} needs a CUDA device; use auto or no"
            )
        return "no"
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _open_output(cfg: RewardConfig, out: Path) -> dict[str, Any] | None:
    """The marker of an earlier run of this config in ``out`` (None for a new folder); refuses a folder
    that holds something else."""
    marker = out / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("fingerprint") != cfg.fingerprint():
            raise RunDirError(
                f"{out}: holds a reward model trained with other settings (fingerprint "
                f"{info.get('fingerprint')} != {cfg.fingerprint()}); use another output_dir"
            )
        return info
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"{out}: exists, is not empty and is not a train-reward folder")
    return None


# --------------------------------------------------------------------------------------------- evaluation
def evaluate_pairs(
    scorer: Any,
    make_batch: Any,
    ds: Any,
    *,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    device: Any = "cpu",
    autocast: Any = None,
) -> dict[str, float]:
    """Sums over this rank's share (rows rank::world) of ``ds``: correct (non-tie pairs, an equal score
    counting half), non-tie pairs, loss, pairs. Reduce them over ranks, then ``summarise``."""
    import torch

    from .model import pair_loss

    rows = list(range(rank, len(ds), world))
    totals = torch.zeros(4, dtype=torch.float64)
    was_training = scorer.training
    scorer.eval()
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = make_batch(ds[rows[i : i + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            with autocast() if autocast else contextlib.nullcontext():
                scores = scorer(**batch).float()
            loss = pair_loss(scores, labels)
            decided = labels != 0.5
            d = scores[:, 0] - scores[:, 1]
            hit = torch.where(d == 0, 0.5, ((d > 0) == (labels > 0.5)).double())
            totals += torch.tensor(
                [hit[decided].sum().item(), decided.sum().item(), loss.sum().item(), len(labels)],
                dtype=torch.float64,
            )
    scorer.train(was_training)
    return totals


def summarise(totals: Any) -> dict[str, float]:
    correct, decided, loss, n = (float(x) for x in totals)
    return {
        "accuracy": correct / decided if decided else float("nan"),
        "loss": loss / n if n else float("nan"),
        "pairs": int(n),
    }


def pair_accuracy(
    model_path: str, dataset: str, *, split: str, aspect: str = "overall", batch_size: int = 64
) -> dict[str, float]:
    """Accuracy and loss of a saved (or base) CLIP-like model on one split of a pairs dataset."""
    import datasets

    from .data import _of_aspect
    from .model import BatchMaker, load_base_model, make_pair_scorer

    model, processor = load_base_model(model_path)
    ds = _of_aspect(datasets.load_dataset(dataset, "pairs", split=split), aspect, split, dataset)
    scorer = make_pair_scorer(model)
    totals = evaluate_pairs(scorer, BatchMaker(processor, None, model.config), ds, batch_size=batch_size)
    return summarise(totals)


# --------------------------------------------------------------------------------------------- training
def train_reward(cfg: RewardConfig, *, progress: bool = True) -> TrainResult:
    """Train (or resume, or find finished) the reward model of ``cfg``; see the module docstring."""
    import torch

    from ..progress import progress_bar
    from .data import GlobalOrder, load_pairs
    from .model import BatchMaker, load_base_model, make_pair_scorer, pair_loss

    out = Path(cfg.output_dir).expanduser()
    marker = _open_output(cfg, out)
    if marker and marker.get("finished"):
        r = marker["result"]
        return TrainResult(output_dir=str(out), already_done=True, **r)

    # ---- everything is checked before the first step
    if cfg.lora is not None:
        _require_peft()
    data = load_pairs(
        cfg.dataset_path,
        aspect=cfg.aspect,
        train_split=cfg.train_split,
        validation_split=cfg.validation_split,
        validation_share=cfg.validation_share,
    )
    model, processor = load_base_model(cfg.base_model_path)
    if cfg.lora is not None:
        model = _with_lora(model, cfg)
    if not cfg.train_logit_scale:
        model.logit_scale.requires_grad_(False)

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from ..dist import dist_timeout

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("reward.device: cuda requested but no CUDA device is available")
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision=_mixed_precision(cfg, cuda),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=dist_timeout())],
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    micro = cfg.batch_size // cfg.gradient_accumulation_steps
    if micro % world:
        raise ConfigError(
            f"reward.batch_size: {cfg.batch_size} pairs per step in {cfg.gradient_accumulation_steps} "
            f"accumulation steps do not split evenly over {world} processes"
        )
    n_train = len(data.train)
    max_steps = cfg.max_steps or max(1, int(cfg.epochs * n_train // cfg.batch_size))
    eval_every = cfg.eval_every or cfg.save_every

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    scorer = make_pair_scorer(model)
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
    )
    from transformers import get_scheduler

    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=max_steps
    )

    ckdir = out / CHECKPOINTS
    state: dict[str, Any] = {"step": 0, "best": None, "before": None, "metrics_bytes": 0}
    last = _checkpoints(ckdir)
    resumed_from = None
    if last:
        step0, path = last[-1]
        saved = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        scorer.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        rng_file = path / f"rng-rank{rank}.pt"
        _set_rng_state(
            torch.load(rng_file if rng_file.exists() else path / "rng-rank0.pt", weights_only=False)
        )
        resumed_from = step0
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if marker is None:
            _write_marker(out, cfg, finished=False)
        metrics_path = out / METRICS
        if metrics_path.exists():  # drop what steps after the checkpoint wrote; they are redone
            with open(metrics_path, "r+b") as f:
                f.truncate(state["metrics_bytes"])
        for p in ckdir.glob(".tmp-*") if ckdir.exists() else []:
            shutil.rmtree(p, ignore_errors=True)
        for p in ckdir.glob("best-*") if ckdir.exists() else []:
            if not state["best"] or p.name != f"best-{state['best']['step']:08d}":
                shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()

    scorer, optimizer = accelerator.prepare(scorer, optimizer)
    device = accelerator.device
    inner = accelerator.unwrap_model(scorer)
    make_batch = BatchMaker(processor, cfg.max_text_length, model.config)
    order = GlobalOrder(n_train, cfg.batch_size, cfg.seed)
    metrics = open(out / METRICS, "ab") if accelerator.is_main_process else None  # noqa: SIM115 - closed at the end

    def emit(record: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
            metrics.flush()

    def validate(step: int) -> dict[str, float] | None:
        if data.validation is None:
            return None
        totals = evaluate_pairs(
            inner,
            make_batch,
            data.validation,
            batch_size=cfg.eval_batch_size,
            rank=rank,
            world=world,
            device=device,
            autocast=accelerator.autocast,
        )
        totals = accelerator.reduce(totals.to(device), reduction="sum").cpu()
        result = summarise(totals)
        emit(
            {
                "step": step,
                "event": "validation",
                "validation_accuracy": result["accuracy"],
                "validation_loss": result["loss"],
                "validation_pairs": result["pairs"],
            }
        )
        return result

    def consider_best(step: int, result: dict[str, float] | None) -> None:
        best = state["best"]
        if result is None:
            return
        key = (result["accuracy"], -result["loss"])
        if best is None or key > (best["accuracy"], -best["loss"]):
            state["best"] = {"step": step, **result}
            if accelerator.is_main_process:
                folder = ckdir / f"best-{step:08d}"
                tmp = ckdir / f".tmp-best-{step:08d}"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                _save({k: v.detach().cpu() for k, v in inner.state_dict().items()}, tmp / "model.pt")
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
                _fsync_dir(ckdir)

    def checkpoint(step: int) -> None:
        tmp = ckdir / f".tmp-{step:08d}"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        _save(_rng_state(), tmp / f"rng-rank{rank}.pt")
        if accelerator.is_main_process:
            metrics.flush()
            state["step"] = step
            state["metrics_bytes"] = metrics.tell()
            _save(
                {
                    "model": {k: v.detach().cpu() for k, v in inner.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
                tmp / "state.pt",
            )
            (tmp / "trainer.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
            _fsync_dir(tmp)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            final = ckdir / f"checkpoint-{step:08d}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(ckdir)
            for _, old in _checkpoints(ckdir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            keep = f"best-{state['best']['step']:08d}" if state["best"] else None
            for p in ckdir.glob("best-*"):
                if p.name != keep:
                    shutil.rmtree(p, ignore_errors=True)
        accelerator.wait_for_everyone()

    start = state["step"]
    if start == 0 and resumed_from is None:
        before = validate(0)
        state["before"] = before
        consider_best(0, before)
    scorer.train()
    accum = cfg.gradient_accumulation_steps
    with progress_bar(
        total=max_steps, desc="train-reward", unit="step", enabled=progress and accelerator.is_main_process
    ) as bar:
        bar.update(start)
        for step in range(start, max_steps):
            t0 = time.perf_counter()
            loss_sum = torch.zeros(2, dtype=torch.float64)
            for m in range(accum):
                rows = order.share(step, m, accum, rank, world)
                batch = {k: v.to(device) for k, v in make_batch(data.train[rows]).items()}
                labels = batch.pop("labels")
                sync = contextlib.nullcontext() if m == accum - 1 else accelerator.no_sync(scorer)
                with sync, accelerator.autocast():
                    losses = pair_loss(scorer(**batch), labels)
                    loss = losses.mean() / accum
                accelerator.backward(loss)
                loss_sum += torch.tensor([losses.detach().sum().item(), len(rows)], dtype=torch.float64)
            if cfg.max_grad_norm is not None:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            loss_sum = accelerator.reduce(loss_sum.to(device), reduction="sum").cpu()
            seconds = time.perf_counter() - t0
            emit(
                {
                    "step": done,
                    "loss": float(loss_sum[0] / loss_sum[1]),
                    "lr": scheduler.get_last_lr()[0],
                    "pairs": done * cfg.batch_size,
                    "pairs_per_s": cfg.batch_size / seconds if seconds else None,
                    "seconds": seconds,
                }
            )
            bar.update(1)
            bar.set_postfix_str(f"loss {float(loss_sum[0] / loss_sum[1]):.4f}")
            if done % eval_every == 0 or done == max_steps:
                consider_best(done, validate(done))
            if done % cfg.save_every == 0 or done == max_steps:
                checkpoint(done)
    if start >= max_steps and not _checkpoints(ckdir):  # nothing trained, nothing saved: impossible
        raise RunDirError(f"{out}: no checkpoint to finish from")

    best = state["best"]
    best_step = best["step"] if best else max_steps
    result = {
        "steps": max_steps,
        "resumed_from": resumed_from,
        "validation_accuracy_before": state["before"]["accuracy"] if state["before"] else None,
        "validation_accuracy": best["accuracy"] if best else None,
        "best_step": best_step,
        "sizes": data.sizes(),
        "validation_source": data.validation_source,
    }
    if accelerator.is_main_process:
        metrics.close()
        if best is not None and best_step != max_steps:
            weights = torch.load(ckdir / f"best-{best_step:08d}" / "model.pt", weights_only=True)
            inner.load_state_dict(weights)
        _finish(out, cfg, inner, processor, data, result)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(output_dir=str(out), **result)


def _write_marker(out: Path, cfg: RewardConfig, *, finished: bool, result: dict | None = None) -> None:
    from .. import __version__
    from ..rundir import atomic_write_text

    info = {
        "format": 1,
        "package_version": __version__,
        "fingerprint": cfg.fingerprint(),
        "config": cfg.to_dict(),
        "finished": finished,
    }
    if result is not None:
        info["result"] = result
    atomic_write_text(out / MARKER, json.dumps(info, indent=2, sort_keys=True) + "\n")


def _finish(out: Path, cfg: RewardConfig, inner: Any, processor: Any, data: Any, result: dict) -> None:
    """Write the result folder: the model (LoRA merged), the processor, the card; then the marker."""
    from ..rundir import atomic_write_text
    from .card import model_card

    model = inner.clip
    if cfg.lora is not None:
        model = model.merge_and_unload()
    tmp = out / ".tmp-final"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    for p in tmp.iterdir():
        os.replace(p, out / p.name)
    tmp.rmdir()
    atomic_write_text(out / "README.md", model_card(cfg, data, result))
    _write_marker(out, cfg, finished=True, result=result)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    _fsync_dir(out)


def _require_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "reward.lora needs the peft package: pip install 'visionprefer[reward]' (or remove reward.lora)"
        ) from None
    return peft


def _with_lora(model: Any, cfg: RewardConfig) -> Any:
    peft = _require_peft()
    lora = cfg.lora
    config = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules)
    )
    wrapped = peft.get_peft_model(model, config)  # the scorer reaches the towers through attribute access
    wrapped.get_base_model().logit_scale.requires_grad_(cfg.train_logit_scale)
    return wrapped
