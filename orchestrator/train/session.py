"""Where a trial's loop runs and how it reports: as Ray Train workers, or inside the Tune trial itself.

`TrainWorkers`: the loop is a TorchTrainer's worker (one of 1..N, DDP across them).
Ray Train keeps the checkpoints (the best and the latest) in the trial's folder
and hands the latest back to a restarted run.

`InTrial`: a one-worker trial in Ray Train V2's local mode (`num_workers=0`), the
loop in the Tune trial's own process. That skips the Train controller and its
helper actors, each a new Ray process (most of a trial's start-up). Ray Train's
report and checkpoint calls are refused inside a Tune function, so this session
reports to Tune and keeps the checkpoints itself: in the same folders
(`GridLayout.checkpoint`), with the same retention (the best epoch and the latest).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from orchestrator.layout import checkpoint_dir_name
from orchestrator.protocol import EpochReport

_CHECKPOINT = re.compile(r"^epoch_(\d{4,})$")


def cuda_device() -> torch.device:
    """The GPU Ray gave this process, or the CPU where CUDA is absent (a node declaring GPUs that torch cannot use)."""
    import ray.train.torch

    return ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")


class Session(Protocol):
    """What the loop needs from where it runs."""

    rank: int  # this worker's rank among `world` (DDP)
    world: int

    def prepare(self, model: torch.nn.Module, loader, device: torch.device) -> tuple[torch.nn.Module, Any]: ...

    def report(self, report: EpochReport, save: Callable[[str], None] | None = None) -> None: ...

    def restored(self) -> AbstractContextManager[Path | None]: ...


class TrainWorkers:
    """The loop as one of a TorchTrainer's workers."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def prepare(self, model: torch.nn.Module, loader, device: torch.device):
        """(the model on `device`, DDP-wrapped across workers; the loader, sharded across them)."""
        import ray.train.torch

        loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)
        return ray.train.torch.prepare_model(model, move_to_device=device), loader

    def report(self, report: EpochReport, save: Callable[[str], None] | None = None) -> None:
        """Report an epoch; `save(folder)` (rank 0) writes its checkpoint, which Ray Train names after the epoch."""
        import ray.train

        if save is None:
            ray.train.report(report.as_result())
            return
        with tempfile.TemporaryDirectory() as folder:
            save(folder)
            ray.train.report(report.as_result(), checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=checkpoint_dir_name(report.epoch))

    def restored(self) -> AbstractContextManager[Path | None]:
        """The trial's latest checkpoint as a local folder while the context lasts; None on a first start."""
        import ray.train

        return _opened(ray.train.get_checkpoint())


class InTrial:
    """The loop in the Tune trial's process (one worker): reports to Tune, keeps its own checkpoints."""

    rank, world = 0, 1

    def __init__(self, trial_dir: str, send: Callable[[dict[str, Any]], None] | None = None) -> None:
        """`trial_dir`: the trial's checkpoint folder (path or URI); `send`: where results go (Tune by default)."""
        self.trial_dir = trial_dir
        self.send = send or _tune_report

    def prepare(self, model: torch.nn.Module, loader, device: torch.device):
        return model.to(device), loader

    def report(self, report: EpochReport, save: Callable[[str], None] | None = None) -> None:
        """Persist the checkpoint first (as Ray Train does), so every epoch Tune hears of can be resumed."""
        from orchestrator.storage import remove_tree, upload_dir

        if save is not None:
            with tempfile.TemporaryDirectory() as folder:
                save(folder)
                upload_dir(folder, f"{self.trial_dir}/{checkpoint_dir_name(report.epoch)}")
            for stale in set(self._epochs()) - {report.epoch, report.best_epoch}:
                remove_tree(f"{self.trial_dir}/{checkpoint_dir_name(stale)}")
        self.send(report.as_result())

    def restored(self) -> AbstractContextManager[Path | None]:
        import ray.train

        epochs = self._epochs()
        return _opened(ray.train.Checkpoint(f"{self.trial_dir}/{checkpoint_dir_name(max(epochs))}") if epochs else None)

    def _epochs(self) -> list[int]:
        from orchestrator.storage import subfolders

        return [int(m.group(1)) for name in subfolders(self.trial_dir) if (m := _CHECKPOINT.match(name))]


def _tune_report(result: dict[str, Any]) -> None:
    from ray import tune

    tune.report(result)


@contextmanager
def _opened(checkpoint) -> Iterator[Path | None]:
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)
