"""Tune trial schedulers by name (the grid's `scheduler.kind`)."""

from __future__ import annotations

from typing import Any, Callable

from orchestrator.config import TuneSchedulerConfig


def _asha(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs,
                         grace_period=min(cfg.grace_period, max_epochs), reduction_factor=cfg.reduction_factor)


def _fifo(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[TuneSchedulerConfig, int], Any]] = {"asha": _asha, "fifo": _fifo}


def create_scheduler(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    return SCHEDULERS[cfg.kind](cfg, max_epochs)
