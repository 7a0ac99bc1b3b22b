"""When a trial writes a checkpoint, and writing it off the training path (rank 0 only).

Which epochs write (`CheckpointPolicy`, the grid's `train.checkpoint`):

- full: weights + training state (optimizer, schedule, EMA, scaler): a resume point. Every epoch in `epoch`
  mode; in `sparse` mode at the scheduler's rungs and when `minutes` passed since the last one;
- final: the trial's last epoch: weights + its bookkeeping, no optimizer state (nothing trains on from it);
- weights: a new best epoch between resume points (sparse mode): its weights alone, for predictions.

How (`Checkpointer`): the state is copied into CPU buffers kept from one checkpoint to the next (a memory copy:
the only part the training waits for), then one background thread serialises it to node-local disk and
commits it to the trial's folder (storage.commit_dir) while the next epoch trains. One write is in flight at
a time: the next checkpoint waits for it. A write is durable once committed, and only then counts:

- the reports tell the driver the best *committed* epoch (`durable`), so a trial the scheduler stops while
  a write is in flight is predicted from its last committed best, never from a folder that is not there;
- a restart reads committed folders only (a write cut short by a kill is as if never made);
- writes the scheduler may act on at once are waited for before the report: at its rungs (it may stop the
  trial there, predicted then from its best; fold_asha may pause it, to restart from that rung's checkpoint)
  and at the last epoch (the driver reads its weights).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from orchestrator.config import CheckpointConfig, TuneSchedulerConfig
from orchestrator.layout import checkpoint_dir_name
from orchestrator.protocol import EpochReport
from orchestrator.storage import commit_dir, is_uri, join, remove_tree, write_manifest
from orchestrator.train.checkpoint import prune, save_files

FULL, FINAL, WEIGHTS = "full", "final", "weights"


class CheckpointTimeout(RuntimeError):
    """A checkpoint write (an upload to a bucket, a write to NFS) outlasted train.checkpoint.timeout_minutes."""



@dataclass
class CheckpointPolicy:
    """Which kind of checkpoint an epoch writes, if any."""

    sparse: bool
    minutes: float
    rungs: frozenset[int]  # the scheduler's rung epochs (1-based): it may stop the trial there, or pause it
    pauses: bool = False  # fold_asha: a trial paused at a rung restarts from that rung's checkpoint
    clock: Callable[[], float] = time.monotonic
    last_full: float | None = None  # when the last resumable checkpoint was written (or the trial (re)started)

    def __post_init__(self) -> None:
        if self.last_full is None:
            self.last_full = self.clock()

    @classmethod
    def of(cls, cfg: CheckpointConfig, scheduler: TuneSchedulerConfig, epochs: int, parameters: int) -> CheckpointPolicy:
        sparse = cfg.every == "sparse" or (cfg.every == "auto" and parameters >= cfg.sparse_from_params_m * 1e6)
        rungs = scheduler.rung_epochs(epochs) if scheduler.kind in ("asha", "fold_asha") else []
        return cls(sparse, cfg.minutes, frozenset(rungs), pauses=scheduler.kind == "fold_asha")

    def kind(self, epoch: int, improved: bool, done: bool, busy: bool = False) -> str | None:
        """The checkpoint epoch `epoch` (1-based) writes: FULL, FINAL, WEIGHTS or None.

        `busy`: the previous write is still in flight. In sparse mode a resume point that is due then waits for
        the next epoch rather than hold the training, unless the epoch must be kept: a rung's, or a new best
        (its weights are what predictions use). Every-epoch mode waits for the write: it promises that a crash
        loses at most the epoch in progress.
        """
        now = self.clock()
        if done:
            return FINAL
        paused_here = self.pauses and epoch in self.rungs
        if not self.sparse or paused_here or (now - self.last_full >= self.minutes * 60 and (improved or not busy)):
            self.last_full = now
            return FULL
        return WEIGHTS if improved else None

    def waits(self, epoch: int, kind: str | None) -> bool:
        """Whether the report of `epoch` waits for every write to commit, so that it names the true best epoch:
        the last report, and a rung's (the scheduler may stop the trial there, which is then predicted from
        that best; or pause it, and it restarts from that rung's checkpoint)."""
        return kind == FINAL or epoch in self.rungs


class Checkpointer:
    """Writes a trial's checkpoints to `trial_dir`, in a background thread unless `background` is false."""

    def __init__(self, trial_dir: str, background: bool = True, timeout_s: float = 1200.0) -> None:
        self.trial_dir, self.timeout_s = trial_dir, timeout_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint", initializer=_yield_to_training) \
            if background else None
        self._pending: Future | None = None
        self._buffers: dict[str, torch.Tensor] = {}
        self.durable: tuple[int, float | None] = (0, None)  # (best epoch, its score) as of the last commit
        self.write_s = math.nan  # the last committed write's seconds (serialise + commit)

    def save(self, kind: str, epoch: int, weights: dict[str, Any], state: dict[str, Any] | None,
             best: tuple[int, float | None], wait: bool = False) -> float:
        """Write checkpoint `epoch` (`state` None: weights alone); returns the seconds the caller was held.

        `best`: (best epoch, score) including this one, durable once this write commits. `wait`: return once
        it is committed. The tensors are copied before this returns, so training may change them at once.
        """
        start = time.perf_counter()
        self.settle(block=True)  # the buffers are free again, and an earlier write's error surfaces here
        if self._pool is None:
            self._write(epoch, weights, state, best)
        else:
            snapshot = _copy_into(self._buffers, "w", weights), _copy_into(self._buffers, "s", state)
            self._pending = self._pool.submit(self._write, epoch, *snapshot, best)
            if wait:
                self.settle(block=True)
        return time.perf_counter() - start

    def busy(self) -> bool:
        """Whether a write is in flight."""
        return self._pending is not None and not self._pending.done()

    def settle(self, block: bool = False) -> None:
        """Take in a finished background write (or wait for it: `block`, at most `timeout_s`); its error is raised
        here, and a write that outlasts the timeout is a CheckpointTimeout."""
        if self._pending is not None and (block or self._pending.done()):
            pending, self._pending = self._pending, None
            try:
                pending.result(timeout=self.timeout_s)
            except FutureTimeout:
                raise CheckpointTimeout(f"a checkpoint write to {self.trial_dir} did not finish in {self.timeout_s:.0f} s: "
                                        f"the storage is unreachable or too slow (check tracking.storage and the "
                                        f"node's network); the trial is retried from its last committed checkpoint, "
                                        f"or raise train.checkpoint.timeout_minutes") from None

    def report(self, report: EpochReport, held_s: float) -> EpochReport:
        """`report` as the driver may act on it: the best committed epoch, and this epoch's checkpoint seconds."""
        self.settle()
        return dataclasses.replace(report, best_epoch=self.durable[0], best_score=self.durable[1],
                                   checkpoint_s=held_s, checkpoint_write_s=self.write_s, settled=not self.busy())

    def close(self, quiet: bool = False) -> None:
        """Wait for the write in flight (a retry after an error restarts from it), stop the thread and free the
        buffers. `quiet`: the caller is raising an error of its own (a NaN loss must fail as itself, not as a
        write error): a write's error is said in one line instead of raised."""
        try:
            self.settle(block=True)
        except Exception as err:
            if not quiet:
                raise
            print(f"checkpoint: the write in flight failed too ({type(err).__name__}: {err})", file=sys.stderr, flush=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=not quiet, cancel_futures=True)
            self._buffers.clear()

    def _write(self, epoch: int, weights: dict[str, Any], state: dict[str, Any] | None,
               best: tuple[int, float | None]) -> None:
        start = time.perf_counter()
        dest = join(self.trial_dir, checkpoint_dir_name(epoch))
        if is_uri(dest):
            with tempfile.TemporaryDirectory(prefix="checkpoint-") as folder:  # node-local disk, then the bucket
                save_files(Path(folder), weights, state)
                commit_dir(folder, dest)
        else:  # a local or NFS folder: written in place (one write, not two), committed by its manifest, written last
            remove_tree(dest)  # a retried epoch's uncommitted leftovers
            Path(dest).mkdir(parents=True)
            save_files(Path(dest), weights, state)
            write_manifest(dest)
        # the best so far, and the best the driver was last told of: a trial stopped at that report is predicted
        # from it, while this write may still commit (its process lingers a moment after the stop)
        prune(self.trial_dir, {best[0], self.durable[0]})
        self.durable, self.write_s = best, time.perf_counter() - start


def _yield_to_training() -> None:
    """The writer thread runs at a lower CPU priority (Linux: nice 10), so where the node has no spare core it
    takes longer rather than slowing the epoch: measured on 2 busy cores, training kept 75-88% of its pace
    beside a 1 GB write instead of 56-69%."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _copy_into(buffers: dict[str, torch.Tensor], path: str, value: Any) -> Any:
    """`value` (a nest of dicts, lists and tensors) with each tensor copied into `buffers[path]` on the CPU,
    allocated once (pinned memory for CUDA tensors: a fast copy) and reused while shape and dtype stay."""
    if isinstance(value, torch.Tensor):
        held = buffers.get(path)
        if held is None or held.shape != value.shape or held.dtype != value.dtype:
            held = buffers[path] = torch.empty(value.shape, dtype=value.dtype, pin_memory=value.is_cuda)
        return held.copy_(value.detach())
    if isinstance(value, dict):
        return {k: _copy_into(buffers, f"{path}/{k}", v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copy_into(buffers, f"{path}/{i}", v) for i, v in enumerate(value))
    return copy.deepcopy(value)
