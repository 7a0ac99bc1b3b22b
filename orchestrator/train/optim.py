"""Optimizers and LR schedules: registries over timm's factories."""

from __future__ import annotations

from typing import Any, Callable

import torch

from orchestrator.config import LRSchedulerConfig, OptimizerConfig

# name -> timm optimizer name (create_optimizer_v2 does the work)
OPTIMIZERS: dict[str, str] = {"adamw": "adamw", "adam": "adam", "sgd": "sgd", "radam": "radam", "lamb": "lamb"}


def create_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.name == "sgd" else {}
    return create_optimizer_v2(model, opt=OPTIMIZERS[cfg.name], lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def _cosine(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps: int):
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=epochs, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=steps,
    )
    return scheduler


def _constant(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps: int):
    return None


# name -> factory(optimizer, cfg, epochs, updates_per_epoch) -> timm scheduler | None
LR_SCHEDULERS: dict[str, Callable[..., Any]] = {"cosine": _cosine, "constant": _constant}


def create_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps_per_epoch: int):
    """A timm scheduler stepped with `step_update(num_updates)` per batch and `step(epoch)` per epoch."""
    return LR_SCHEDULERS[cfg.name](optimizer, cfg, epochs, steps_per_epoch)
