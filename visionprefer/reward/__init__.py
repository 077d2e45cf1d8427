"""Reward-model training on visionprefer preference pairs (``visionprefer train-reward``).

Importing this package is cheap (no torch): the training code imports its dependencies when it runs.

    from visionprefer.reward import load_reward_config, train_reward
    result = train_reward(load_reward_config("reward.yaml"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import LoraConfig, RewardConfig, load_reward_config, reward_config_from_dict

__all__ = [
    "LoraConfig",
    "RewardConfig",
    "load_reward_config",
    "reward_config_from_dict",
    "train_reward",
    "pair_accuracy",
    "TrainResult",
]

if TYPE_CHECKING:
    from .train import TrainResult, pair_accuracy, train_reward


def __getattr__(name: str) -> Any:
    if name in ("train_reward", "pair_accuracy", "TrainResult"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'visionprefer.reward' has no attribute {name!r}")
