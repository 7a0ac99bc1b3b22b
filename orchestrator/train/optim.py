"""Optimizers and LR schedules: registries over timm's factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from orchestrator.catalog import OPTIMIZERS

if TYPE_CHECKING:
    from orchestrator.config import LRSchedulerConfig, OptimizerConfig


def create_optimizer(model: torch.nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    cfg = cfg.resolved()
    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.name == "sgd" else {}
    return create_optimizer_v2(model, opt=OPTIMIZERS[cfg.name].timm_name, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def _timm(sched: str, per_update: bool) -> Callable[..., Any]:
    """A factory for one of timm's schedulers (create_scheduler_v2 does the work)."""

    def factory(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps: int, mode: str):
        from timm.scheduler import create_scheduler_v2

        cycles = cfg.restarts + 1  # warm restarts: the cycles share the epochs, each cycle_mul times the one before
        first = epochs / sum(cfg.cycle_mul**i for i in range(cycles))
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=sched, num_epochs=first, warmup_epochs=warmup(cfg, epochs), warmup_lr=cfg.warmup_lr,
            min_lr=cfg.min_lr, decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate,
            patience_epochs=cfg.patience_epochs, plateau_mode=mode, step_on_epochs=not per_update, updates_per_epoch=steps,
            cycle_limit=cycles, cycle_mul=cfg.cycle_mul, cycle_decay=cfg.cycle_decay,
        )
        return scheduler

    return factory


def warmup(cfg: LRSchedulerConfig, epochs: int) -> int:
    """Warmup epochs, never the trial's last one (a 1-epoch trial would otherwise never reach its lr)."""
    return min(cfg.warmup_epochs, max(epochs - 1, 0))


class OneCycle:
    """torch's OneCycleLR behind timm's scheduler interface (step_update per batch, step per epoch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps: int, mode: str):
        max_lr = [group["lr"] for group in optimizer.param_groups]
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=max(1, epochs * steps), pct_start=max(warmup(cfg, epochs), 0.3 * epochs) / epochs,
            final_div_factor=max(max_lr) / max(cfg.min_lr, 1e-12) / 25,
        )

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        if self.schedule.last_epoch < self.schedule.total_steps - 1:
            self.schedule.step()

    def step(self, epoch: int, metric: float | None = None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)


def _constant(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps: int, mode: str):
    return None


# catalog.LR_SCHEDULERS' names -> factory(optimizer, cfg, epochs, updates_per_epoch, metric mode) -> scheduler | None
LR_SCHEDULERS: dict[str, Callable[..., Any]] = {
    "cosine": _timm("cosine", per_update=True),
    "step": _timm("step", per_update=False),
    "plateau": _timm("plateau", per_update=False),  # steps on the validation metric
    "one_cycle": OneCycle,
    "constant": _constant,
}


def create_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: LRSchedulerConfig, epochs: int, steps_per_epoch: int,
                        mode: str = "max"):
    """A scheduler stepped with `step_update(num_updates)` per optimizer step and `step(epoch, metric)` per epoch."""
    return LR_SCHEDULERS[cfg.name](optimizer, cfg, epochs, steps_per_epoch, mode)
