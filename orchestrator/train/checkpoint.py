"""A trial's checkpoint folders: their files, which are committed, which one a restart takes, what an end frees.

Each checkpoint is a folder `epoch_NNNN` in the trial's folder (`GridLayout.checkpoint`: local disk, NFS or a
bucket), committed by its manifest (storage.commit_dir: no rename, so a bucket works). Weights (model.pt) and
the training state (train_state.pt) are apart, both loaded weights-only. A folder without the training state
holds a best epoch's weights alone (train/checkpointer.py's sparse mode, or an ended trial's kept weights):
predictions read it, a restart does not.

A restart takes the newest resumable checkpoint whose files match its manifest: a damaged latest one (truncated
by a lost node or a disk error) falls back to an older one, and with none good left the trial starts afresh; it
never fails for good.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from orchestrator.layout import checkpoint_dir_name
from orchestrator.storage import (
    MANIFEST,
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
    write_text,
)

MODEL_FILE = "model.pt"  # state_dict of the bare (non-DDP) model: what predictions and MLflow need
STATE_FILE = "train_state.pt"  # optimizer, LR schedule, epoch, best score: what a resumed trial needs
KEEP_LATEST = 2  # resumable ones besides the best: a damaged latest falls back one checkpoint, not to the best

_CHECKPOINT = re.compile(r"^epoch_(\d{4,})$")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(folder: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    save_files(Path(folder), unwrap(model).state_dict(), state)


def save_files(folder: Path, weights: dict[str, Any], state: dict[str, Any] | None) -> None:
    """model.pt (`weights`), and train_state.pt unless `state` is None (a best epoch's weights alone)."""
    _save_file(weights, folder / MODEL_FILE)
    if state is not None:
        _save_file(state, folder / STATE_FILE)


def _save_file(value: Any, path: Path) -> None:
    """torch.save, a full disk raised as one (torch's zip writer says only "unexpected pos ..."), so the driver
    stops the grid for `--resume` instead of retrying the trial into the same full disk."""
    try:
        torch.save(value, path)
    except RuntimeError as error:
        if shutil.disk_usage(path.parent).free < _tensor_bytes(value):
            raise OSError(errno.ENOSPC, f"No space left on device: {path} ({error})") from error
        raise


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    unwrap(model).load_state_dict(torch.load(Path(folder) / MODEL_FILE, map_location="cpu", weights_only=True))


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def committed_epochs(trial_dir: str) -> list[int]:
    """The epochs of the trial's committed checkpoints (manifest written), newest first."""
    epochs = [int(m.group(1)) for name in subfolders(trial_dir) if (m := _CHECKPOINT.match(name))]
    return sorted((e for e in epochs if committed(join(trial_dir, checkpoint_dir_name(e)))), reverse=True)


def resumable(trial_dir: str, epoch: int) -> bool:
    """Whether the committed checkpoint of `epoch` has a training state (not a best epoch's weights alone)."""
    return exists(join(trial_dir, checkpoint_dir_name(epoch), STATE_FILE))


def prune(trial_dir: str, best_epochs: set[int]) -> None:
    """Keep the best epochs' checkpoints and the latest KEEP_LATEST resumable ones; remove the others."""
    epochs = committed_epochs(trial_dir)
    latest = [e for e in epochs if resumable(trial_dir, e)][:KEEP_LATEST]
    for stale in set(epochs) - set(latest) - best_epochs:
        remove_tree(join(trial_dir, checkpoint_dir_name(stale)))


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


def restored(trial_dir: str, notes: list[str]) -> Iterator[Path | None]:
    """The trial's newest good resumable checkpoint as a local folder while the context lasts; None on a first
    start (or with every one damaged). Skipped damaged checkpoints are said on stderr and added to `notes`."""
    return good_checkpoint(trial_dir, [e for e in committed_epochs(trial_dir) if resumable(trial_dir, e)], notes)


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
