"""Loss functions by name."""

from __future__ import annotations

from typing import Callable

import torch

from orchestrator.config import LossConfig


def _cross_entropy(cfg: LossConfig) -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


LOSSES: dict[str, Callable[[LossConfig], torch.nn.Module]] = {"cross_entropy": _cross_entropy}


def create_loss(cfg: LossConfig) -> torch.nn.Module:
    return LOSSES[cfg.name](cfg)
