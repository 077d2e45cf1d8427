"""The ``reward:`` config of ``visionprefer train-reward``: a frozen, self-validating dataclass.

A reward config is a YAML file whose top level is either the settings themselves or a mapping with a
``reward:`` section (so a build config may carry one; its other sections are ignored here). Keys and types
are checked by the same loader as the build config (``visionprefer.config``): unknown keys and wrong types
are a :class:`~visionprefer.errors.ConfigError` naming the dotted key.

Paths: ``dataset`` and ``base_model`` are resolved against the config file's folder when such a local
path exists (else they are Hub ids, or a ``tiny-*`` model name); ``output_dir``, like ``--out``, is
relative to the working directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

ASPECTS = ("overall", "prompt_following", "fidelity", "aesthetic", "harmlessness")

# Settings that change nothing in the trained weights: left out of the fingerprint, so a resumed run may
# change them (checkpoint more often, a different folder, more data workers).
NOT_FINGERPRINTED = ("output_dir", "save_every", "keep_checkpoints", "num_workers", "base_dir")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (needs ``peft``: ``pip install 'visionprefer[reward]'``); merged into the saved model."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"reward.lora.r: must be a positive integer, got {self.r}")


@dataclass(frozen=True)
class RewardConfig:
    dataset: str  # a dataset folder (visionprefer publish output) or a Hub dataset id; its config "pairs"
    base_model: str  # a CLIP-family transformers model: Hub id, local folder, or tiny-clip
    output_dir: str  # the trained model's save_pretrained folder (checkpoints and metrics live inside)
    aspect: str = "overall"  # which pairs to learn from: overall or one aspect
    train_split: str = "train"
    validation_split: str = "validation"  # used when the dataset has it
    validation_share: float = 0.1  # otherwise: this share of the train prompts is held out (0: none)
    max_steps: int | None = None  # optimizer steps; default: `epochs` passes over the train pairs
    epochs: float = 1.0
    batch_size: int = 32  # pairs per optimizer step, over all processes and accumulation steps
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant_with_warmup"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    train_logit_scale: bool = True
    max_text_length: int | None = None  # default: the text tower's position limit
    eval_batch_size: int = 64
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: bf16/fp16 on CUDA, none on CPU
    save_every: int = 500  # checkpoint (and validate) every N optimizer steps, and at the end
    eval_every: int | None = None  # validate every N steps (default: save_every); also at steps 0 and end
    keep_checkpoints: int = 2
    num_workers: int = 0  # DataLoader workers preparing batches
    lora: LoraConfig | None = None
    base_dir: str = dataclasses.field(default=".", metadata={"internal": True})

    def __post_init__(self) -> None:
        if self.aspect not in ASPECTS:
            raise ConfigError(f"reward.aspect: {self.aspect!r} is not one of {', '.join(ASPECTS)}")
        for key in ("batch_size", "gradient_accumulation_steps", "save_every", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"reward.{key}: must be a positive integer, got {getattr(self, key)}")
        for key in ("max_steps", "eval_every", "max_text_length"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"reward.{key}: must be a positive integer, got {value}")
        if self.batch_size % self.gradient_accumulation_steps:
            raise ConfigError(
                f"reward.batch_size: {self.batch_size} is not a multiple of gradient_accumulation_steps "
                f"{self.gradient_accumulation_steps}"
            )
        if not 0.0 <= self.validation_share < 1.0:
            raise ConfigError(f"reward.validation_share: {self.validation_share} is not in [0, 1)")
        if self.epochs <= 0:
            raise ConfigError(f"reward.epochs: must be positive, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"reward.learning_rate: must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.keep_checkpoints < 1 or self.num_workers < 0:
            raise ConfigError("reward: warmup_steps and num_workers must be >= 0, keep_checkpoints >= 1")

    def resolve(self, value: str) -> str:
        """A local path relative to the config's folder when it exists there, else ``value`` unchanged."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        local = Path(self.base_dir) / p
        return str(local.resolve()) if local.exists() else value

    @property
    def dataset_path(self) -> str:
        return self.resolve(self.dataset)

    @property
    def base_model_path(self) -> str:
        return self.resolve(self.base_model)

    def to_dict(self) -> dict[str, Any]:
        from ..config import _plain

        data = _plain(self)
        data.pop("base_dir", None)
        return data

    def fingerprint(self) -> str:
        """Digest of the settings that determine the trained weights (paths as given, not resolved)."""
        from ..config import fingerprint

        data = {k: v for k, v in self.to_dict().items() if k not in NOT_FINGERPRINTED}
        return fingerprint(data)


def reward_config_from_dict(
    data: dict[str, Any], *, base_dir: str = ".", origin: str = "reward config"
) -> RewardConfig:
    from ..config import _build

    try:
        cfg = _build(RewardConfig, data, "reward")
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    return dataclasses.replace(cfg, base_dir=base_dir)


def load_reward_config(path: str | Path | None = None, **overrides: Any) -> RewardConfig:
    """Read a reward config (a YAML file with the settings or a ``reward:`` section); ``overrides`` that
    are not None replace the file's values (the CLI's flags). Without a file, the overrides are the
    config."""
    data: dict[str, Any] = {}
    base_dir = "."
    origin = "train-reward"
    if path is not None:
        import yaml

        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not a readable YAML file ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of settings at the top level")
        if "reward" in loaded:
            loaded = loaded["reward"]
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: reward: expected a mapping of settings")
        data = dict(loaded)
        base_dir = str(p.resolve().parent)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return reward_config_from_dict(data, base_dir=base_dir, origin=origin)
