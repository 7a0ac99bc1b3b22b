"""Where a trial's loop runs and how it reports: as Ray Train workers, or inside the Tune trial itself.

`TrainWorkers`: the loop is a TorchTrainer's worker (one of 1..N, DDP across them).

`InTrial`: a one-worker trial in Ray Train V2's local mode (`num_workers=0`), the
loop in the Tune trial's own process. That skips the Train controller and its
helper actors, each a new Ray process (most of a trial's start-up). Ray Train's
report call is refused inside a Tune function, so this session reports to Tune.

Both leave checkpoints to the loop's rank 0 (train/checkpointer.py writes them in
the trial's folder, train/checkpoint.py says which one a restart takes), not to Ray
Train: one way for both, with writes off the training path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from orchestrator.protocol import EpochReport


def cuda_device() -> torch.device:
    """The GPU Ray gave this process, or the CPU where CUDA is absent (a node declaring GPUs that torch cannot use)."""
    import ray.train.torch

    return ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")


class Session(Protocol):
    """What the loop needs from where it runs."""

    rank: int  # this worker's rank among `world` (DDP)
    world: int
    trial_dir: str  # the trial's checkpoint folder (path or URI)
    notes: list[str]  # what restored() had to say (damaged checkpoints skipped), for the driver's console

    def prepare(self, model: torch.nn.Module, loader, device: torch.device) -> tuple[torch.nn.Module, Any]: ...

    def report(self, report: EpochReport) -> None: ...


class TrainWorkers:
    """The loop as one of a TorchTrainer's workers."""

    def __init__(self, trial_dir: str) -> None:
        import ray.train

        self.trial_dir, self.notes = trial_dir, []
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def prepare(self, model: torch.nn.Module, loader, device: torch.device):
        """(the model on `device`, DDP-wrapped across workers; the loader, sharded across them)."""
        import ray.train.torch

        loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)
        return ray.train.torch.prepare_model(model, move_to_device=device), loader

    def report(self, report: EpochReport) -> None:
        import ray.train

        ray.train.report(report.as_result())


class InTrial:
    """The loop in the Tune trial's process (one worker): reports to Tune."""

    rank, world = 0, 1

    def __init__(self, trial_dir: str, send: Callable[[dict[str, Any]], None] | None = None) -> None:
        """`send`: where results go (Tune by default)."""
        self.trial_dir, self.notes = trial_dir, []
        self.send = send or _tune_report

    def prepare(self, model: torch.nn.Module, loader, device: torch.device):
        return model.to(device), loader

    def report(self, report: EpochReport) -> None:
        self.send(report.as_result())


def _tune_report(result: dict[str, Any]) -> None:
    from ray import tune

    tune.report(result)
