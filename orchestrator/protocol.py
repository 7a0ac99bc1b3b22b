"""What crosses from a trial's workers to the driver: the epoch report, and the trial statuses.

The worker builds one `EpochReport` per epoch and hands `as_result()` to Ray Train;
Tune passes that dict on, and the schedulers, the MLflow callback and the progress
view read it back with `EpochReport.from_result`. A new metric is one field here
(`metric()` marks what MLflow and the progress view show).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# The key Ray's own components are told by name (a field of EpochReport):
TIME_ATTR = "epoch"  # what schedulers count: the trial's own epoch, so a resumed trial keeps its rungs
SYSTEM_PREFIX = "system/"  # MLflow's prefix of system metrics
EVERY_EPOCH = "train_loss"  # a metric every epoch logs, a refit's too (which has no validation score)


def metric(better: str | None = None) -> Any:
    """A field that is a per-epoch metric, logged to MLflow at step = epoch; `better` ("max" | "min") marks
    a validation score that `scheduler.metric` may name (and the mode it needs)."""
    return field(default=float("nan"), metadata={"metric": True, "better": better})


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based; the checkpoint of this report is named after it
    train_loss: float = metric()
    val_loss: float = metric(better="min")
    val_acc: float = metric(better="max")
    val_f1: float = metric(better="max")  # macro F1
    val_logloss: float = metric(better="min")  # the competition metrics of orchestrator/metrics.py
    val_auc: float = metric(better="max")
    val_qwk: float = metric(better="max")
    val_f2: float = metric(better="max")  # multilabel: tags called at 0.5
    val_f1_samples: float = metric(better="max")
    val_f1_micro: float = metric(better="max")
    val_f1_macro: float = metric(better="max")
    val_map: float = metric(better="max")
    lr: float = metric()
    epoch_time_s: float = metric()  # training + validation of this epoch
    images_per_s: float = metric()  # training images per second, summed over the trial's workers
    data_wait_s: float = metric()  # of the training time, the rank-0 worker's wait for batches (the rest: the steps)
    checkpoint_s: float = metric()  # what this epoch's checkpoint held the training for (0: none written)
    checkpoint_write_s: float = metric()  # the last committed checkpoint's write (serialise + upload), in the background
    trial_done: bool = False  # the trial ended by itself (all its epochs, or early stopping's patience)
    # The best epoch whose checkpoint is committed (train/checkpointer.py), decided by the worker once: the
    # driver predicts from that checkpoint. The epoch of a new best is named once its write committed.
    best_epoch: int = 0
    best_score: float | None = None  # the scheduler metric at best_epoch
    settled: bool = True  # no checkpoint write in flight at this report: a scheduler may stop the trial only at one
    attempt: int = 0  # how many times the trial was retried from its checkpoint
    worker_node: str = ""  # "<ip>/<node id prefix>" of the rank-0 worker (MLflow tag `nodes`)
    replay: bool = False  # a restored trial repeating its checkpoint's report (the driver may have missed it)
    predicted: bool = False  # a last report: the trial wrote its own OOF + test predictions first (GridLayout.predictions)
    predict_s: float = 0.0  # the seconds that took (before this report, after the epoch and its checkpoint wait)
    restore_note: str = ""  # the first report after a restore that skipped damaged checkpoints: what happened
    # the rank-0 worker's node during the epoch, by MLflow's system metric names without "system/" (train/system.py)
    system: dict[str, float] = field(default_factory=dict)
    # a multi-head model's validation scores per head (`val_acc_mask`, `val_f1_age`, ...), logged as metrics
    heads: dict[str, float] = field(default_factory=dict)

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("metric"))

    @classmethod
    def scores(cls) -> dict[str, str]:
        """Validation scores a scheduler can rank trials by -> the mode that ranks them ("max" | "min")."""
        return {f.name: f.metadata["better"] for f in dataclasses.fields(cls) if f.metadata.get("better")}

    def metrics(self) -> dict[str, float]:
        """The per-epoch metrics (what MLflow logs), without bookkeeping; one not measured in this epoch (NaN: no
        checkpoint write committed yet, a report from before the field existed) is left out."""
        return {name: value for name in self.metric_names() if not math.isnan(value := getattr(self, name))}

    def system_metrics(self) -> dict[str, float]:
        """The system samples under MLflow's own names (`system/...`: the run's System metrics tab)."""
        return {f"{SYSTEM_PREFIX}{name}": value for name, value in self.system.items()}

    def as_result(self) -> dict[str, Any]:
        """The dict Ray Train and Tune carry (flags as 0/1 floats, which every Tune logger takes)."""
        return {k: float(v) if isinstance(v, bool) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> EpochReport | None:
        """Read a Tune result back; None for results that carry no epoch report (Tune's own)."""
        if TIME_ATTR not in result:
            return None
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in result.items() if k in known}
        for name in ("trial_done", "replay", "settled"):
            values[name] = bool(values.get(name, name == "settled"))
        for name in ("epoch", "best_epoch", "attempt"):
            values[name] = int(values.get(name, 0) or 0)
        # Tune's loggers may hand the nested dict on flattened, with "/" between the parts
        flat = {k.removeprefix(SYSTEM_PREFIX): v for k, v in result.items() if k.startswith(SYSTEM_PREFIX)}
        values["system"] = dict(values.get("system") or flat)
        values["heads"] = dict(values.get("heads") or {k.removeprefix("heads/"): v for k, v in result.items()
                                                        if k.startswith("heads/")})
        return cls(**values)


def check_stop(report: EpochReport, trial: str) -> None:
    """The rule pruning and predictions rely on: a scheduler stops a trial only at a report that names a committed
    best epoch. A report names only a committed best (`best_epoch`: Checkpointer.durable), a write that commits
    after the stop never prunes the best the last report named, and the trial's first checkpoint is waited for;
    so a stop at a report whose later write is still in flight (fold_asha stops every fold of a config it stopped,
    at whatever epoch each reports) is safe. A stop at a report that names no best at all would leave the driver
    nothing to predict from: that is raised, loudly."""
    if not report.settled and not report.best_epoch:
        raise RuntimeError(f"the scheduler stopped {trial} at epoch {report.epoch}, whose report names no committed best "
                           f"epoch while a checkpoint write was in flight: its predictions would have no checkpoint to "
                           f"read (a trial's first checkpoint must be waited for before its report)")


class TrialStatus(str, Enum):
    """A trial's status: the summary table, MLflow's `status` tag, and what reruns decide on."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # fold-aware ASHA parked it at a rung until its sibling folds get there
    FINISHED = "FINISHED"  # ran to its own end: all epochs, or early stopping's patience
    KILLED = "KILLED"  # stopped early by the scheduler
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"  # the driver stopped; `--resume` continues it
    ABANDONED = "ABANDONED"  # an unfinished run replaced by a fresh start

    def __str__(self) -> str:
        return self.value

    @property
    def ended(self) -> bool:
        """Ended for good: a rerun reuses it instead of training it again."""
        return self in (TrialStatus.FINISHED, TrialStatus.KILLED)

    @property
    def terminal(self) -> bool:
        """Done in this invocation (counted as done by the progress view)."""
        return self.ended or self is TrialStatus.FAILED

    @property
    def open(self) -> bool:
        """Not ended yet: interrupted if the driver goes down now."""
        return self in (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)

    @property
    def mlflow_status(self) -> str:
        """MLflow's run status: it knows only FINISHED, KILLED and FAILED for an ended run."""
        return self.value if self.terminal else TrialStatus.KILLED.value
