"""Where a trial's loop runs and how it reports: as Ray Train workers, or inside the Tune trial itself.

`TrainWorkers`: the loop is a TorchTrainer's worker (one of 1..N, DDP across them).
Ray Train keeps the checkpoints (the best and the latest) in the trial's folder
and hands the latest back to a restarted run.

`InTrial`: a one-worker trial in Ray Train V2's local mode (`num_workers=0`), the
loop in the Tune trial's own process. That skips the Train controller and its
helper actors, each a new Ray process (most of a trial's start-up). Ray Train's
report and checkpoint calls are refused inside a Tune function, so this session
reports to Tune and keeps the checkpoints itself: in the same folders
(`GridLayout.checkpoint`), committed by their manifest (storage.commit_dir: no
rename, so a bucket works), keeping the best epoch and the latest two.

Both restore the newest checkpoint whose files match its manifest: a damaged
latest one (truncated by a lost node or a disk error) falls back to an older one,
and with none good left the trial starts afresh; it never fails for good.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from orchestrator.layout import checkpoint_dir_name
from orchestrator.protocol import EpochReport
from orchestrator.storage import (
    MANIFEST,
    commit_dir,
    committed,
    exists,
    join,
    read_text,
    remove_file,
    remove_tree,
    subfolders,
    tree_bytes,
    verify,
    without_query,
    write_manifest,
    write_text,
)
from orchestrator.train.checkpoint import STATE_FILE

_CHECKPOINT = re.compile(r"^epoch_(\d{4,})$")
KEEP_LATEST = 2  # besides the best: a damaged latest checkpoint falls back one epoch, not all the way to the best


def cuda_device() -> torch.device:
    """The GPU Ray gave this process, or the CPU where CUDA is absent (a node declaring GPUs that torch cannot use)."""
    import ray.train.torch

    return ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")


class Session(Protocol):
    """What the loop needs from where it runs."""

    rank: int  # this worker's rank among `world` (DDP)
    world: int
    notes: list[str]  # what restored() had to say (damaged checkpoints skipped), for the driver's console

    def prepare(self, model: torch.nn.Module, loader, device: torch.device) -> tuple[torch.nn.Module, Any]: ...

    def report(self, report: EpochReport, save: Callable[[str], None] | None = None) -> None: ...

    def restored(self) -> AbstractContextManager[Path | None]: ...


class TrainWorkers:
    """The loop as one of a TorchTrainer's workers."""

    def __init__(self, trial_dir: str) -> None:
        """`trial_dir`: the trial's checkpoint folder (Ray Train's run folder), where a fallback is looked for."""
        import ray.train

        self.trial_dir, self.notes = trial_dir, []
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
            write_manifest(folder)  # Ray uploads it with the files: restore verifies them against it
            ray.train.report(report.as_result(), checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=checkpoint_dir_name(report.epoch))

    def restored(self) -> AbstractContextManager[Path | None]:
        """The trial's newest good checkpoint as a local folder while the context lasts; None on a first start.

        Ray Train hands back its latest; when that one is damaged, the older ones in the trial's folder are tried.
        """
        import ray.train

        latest = ray.train.get_checkpoint()
        if latest is None:
            return good_checkpoint(self.trial_dir, [], self.notes)
        epoch = int(_CHECKPOINT.match(Path(latest.path).name).group(1))
        return good_checkpoint(self.trial_dir, [epoch] + [e for e in committed_epochs(self.trial_dir) if e < epoch], self.notes)


class InTrial:
    """The loop in the Tune trial's process (one worker): reports to Tune, keeps its own checkpoints."""

    rank, world = 0, 1

    def __init__(self, trial_dir: str, send: Callable[[dict[str, Any]], None] | None = None) -> None:
        """`trial_dir`: the trial's checkpoint folder (path or URI); `send`: where results go (Tune by default)."""
        self.trial_dir, self.notes = trial_dir, []
        self.send = send or _tune_report

    def prepare(self, model: torch.nn.Module, loader, device: torch.device):
        return model.to(device), loader

    def report(self, report: EpochReport, save: Callable[[str], None] | None = None) -> None:
        """Commit the checkpoint first (as Ray Train does), so every epoch Tune hears of can be resumed."""
        if save is not None:
            with tempfile.TemporaryDirectory() as folder:
                save(folder)
                commit_dir(folder, join(self.trial_dir, checkpoint_dir_name(report.epoch)))
            epochs = committed_epochs(self.trial_dir)
            for stale in set(epochs[KEEP_LATEST:]) - {report.best_epoch}:
                remove_tree(join(self.trial_dir, checkpoint_dir_name(stale)))
        self.send(report.as_result())

    def restored(self) -> AbstractContextManager[Path | None]:
        return good_checkpoint(self.trial_dir, committed_epochs(self.trial_dir), self.notes)


def release_ended(trial_dir: str, best_epoch: int, keep_weights: bool) -> int:
    """An ended trial whose weights MLflow holds gives its storage back: all of it, or (`keep_weights`) all but
    its best weights. Returns the bytes freed."""
    if keep_weights:
        return keep_only_best(trial_dir, best_epoch)
    before = tree_bytes(trial_dir)
    remove_tree(trial_dir)
    return before


def keep_only_best(trial_dir: str, best_epoch: int) -> int:
    """An ended trial keeps only its best epoch's weights: the other checkpoints and the best one's training state
    (optimizer, schedule: what only a resume needs) go. Returns the bytes freed. The manifest is rewritten first,
    without the state file, so the checkpoint stays whole for readers at every step."""
    before = tree_bytes(trial_dir)
    for epoch in committed_epochs(trial_dir):
        if epoch != best_epoch:
            remove_tree(join(trial_dir, checkpoint_dir_name(epoch)))
    best = join(trial_dir, checkpoint_dir_name(best_epoch))
    if exists(join(best, STATE_FILE)):
        manifest = json.loads(read_text(join(best, MANIFEST)))
        manifest["files"].pop(STATE_FILE, None)
        write_text(json.dumps(manifest, indent=1), join(best, MANIFEST))
        remove_file(join(best, STATE_FILE))
    return before - tree_bytes(trial_dir)


def committed_epochs(trial_dir: str) -> list[int]:
    """The epochs of the trial's committed checkpoints (manifest written), newest first."""
    epochs = [int(m.group(1)) for name in subfolders(trial_dir) if (m := _CHECKPOINT.match(name))]
    return sorted((e for e in epochs if committed(join(trial_dir, checkpoint_dir_name(e)))), reverse=True)


@contextmanager
def good_checkpoint(trial_dir: str, epochs: list[int], notes: list[str]) -> Iterator[Path | None]:
    """The first of `epochs`' checkpoints whose files match their manifest, as a local folder while the context
    lasts; None when there is none (a first start, or every one damaged: the trial starts afresh).

    Each damaged checkpoint skipped, and a fresh start after them, is said on stderr and added to `notes`.
    """
    import ray.train

    def say(text: str) -> None:
        notes.append(text)
        print(f"{without_query(trial_dir).rsplit('/', 1)[-1]}: {text}", file=sys.stderr, flush=True)

    for epoch in epochs:
        name = checkpoint_dir_name(epoch)
        with ray.train.Checkpoint(join(trial_dir, name)).as_directory() as folder:
            problem = verify(folder)
            if problem is None:
                if notes:
                    say(f"continues from checkpoint {name}")
                yield Path(folder)
                return
        say(f"checkpoint {name} is damaged ({problem}), skipped")
    if notes:
        say("no good checkpoint is left: starts afresh from epoch 1 (epochs already logged are not logged again)")
    yield None


def _tune_report(result: dict[str, Any]) -> None:
    from ray import tune

    tune.report(result)
