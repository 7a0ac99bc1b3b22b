"""The driver's book of trials: each one's status, epochs, best checkpoint, retries and nodes.

Pure bookkeeping (no Ray, no MLflow): the Tune callback feeds it events and acts
on what changed; the summary table and the progress view read it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.config import TrialConfig, lookup
from orchestrator.protocol import EpochReport, TrialStatus
from orchestrator.search.plan import PlannedTrial
from orchestrator.tracking.cost import Cost
from orchestrator.tracking.history import PriorTrial


@dataclass
class TrialRecord:
    """What the driver knows about one trial; becomes a row of the summary table."""

    planned: PlannedTrial
    run_id: str | None = None
    status: TrialStatus = TrialStatus.PENDING
    epochs: int = 0
    best: float | None = None  # the best epoch's score whose checkpoint is committed (what predictions use)
    seen_best: float | None = None  # the best score any report showed, committed or not (what people are shown)
    best_epoch: int | None = None
    best_checkpoint: str | None = None
    error: str | None = None
    predictions: bool = False
    predicted_itself: bool = False  # it wrote its own OOF + test frames (GridLayout.predictions): no task needed
    retries: int = 0
    nodes: list[str] = field(default_factory=list)  # where its rank-0 worker ran, in order (a retry may move it)
    reused: bool = False  # ended in an earlier invocation; not trained in this one
    cost: Cost = field(default_factory=Cost)  # what its run holds: earlier invocations' cost, plus this one's once it ends

    @property
    def key(self) -> str:
        return self.planned.key

    @property
    def score(self) -> float | None:
        """The trial's best score as its reports showed it: a Ctrl-C after an epoch whose checkpoint had not yet
        committed still shows that epoch's score (the leaderboard, the summary)."""
        return self.seen_best if self.seen_best is not None else self.best


@dataclass(frozen=True)
class ResultNews:
    """What one epoch report changed: the callback logs and shows only this."""

    new_epoch: bool  # not a restored trial repeating an epoch the driver logged already
    retried: bool  # the first report of a retry
    moved: bool  # the rank-0 worker is on a node this trial has not run on before


class TrialBook:
    def __init__(self, plan: Iterable[PlannedTrial], axes: Iterable[str] = (), continued: dict[str, PriorTrial] | None = None,
                 reused: Iterable[tuple[PlannedTrial, PriorTrial]] = ()):
        """`plan`: the trials to run; `continued`: earlier runs some of them go on in (`--resume`);
        `reused`: ended trials of earlier runs (summary rows only); `axes`: search paths, read back from
        trials nobody planned ahead (searcher: optuna)."""
        self.axes = list(axes)
        self.records: dict[str, TrialRecord] = {}
        self.add(plan, continued, reused)

    def add(self, plan: Iterable[PlannedTrial], continued: dict[str, PriorTrial] | None = None,
            reused: Iterable[tuple[PlannedTrial, PriorTrial]] = ()) -> None:
        """More trials (a later phase's: refits), as the constructor takes them."""
        self.records.update({p.key: TrialRecord(p) for p in plan})
        for key, old in (continued or {}).items():  # its run's history goes on after the last epoch it holds
            record = self.records[key]
            record.run_id, record.epochs, record.nodes, record.cost = old.run_id, old.epochs, list(old.nodes), old.cost
        for p, old in reused:
            self.records[p.key] = TrialRecord(p, old.run_id, old.status, old.epochs, old.best, predictions=old.predictions,
                                              reused=True, cost=old.cost)

    def record(self, key: str, trial_config: dict) -> TrialRecord:
        """The record of a trial; one proposed during the run by a searcher is added."""
        if key not in self.records:
            searched = {path: lookup(trial_config, path, where=path) for path in self.axes}
            self.records[key] = TrialRecord(PlannedTrial(TrialConfig.model_validate(trial_config), searched))
        return self.records[key]

    def with_status(self, *statuses: TrialStatus) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.status in statuses]

    # ------------------------------------------------------------ events

    @staticmethod
    def start(record: TrialRecord) -> bool:
        """The trial runs; True when it goes on in a run it had (resumed, or unpaused by fold_asha)."""
        record.status = TrialStatus.RUNNING
        return record.run_id is not None

    @staticmethod
    def result(record: TrialRecord, report: EpochReport) -> ResultNews:
        new_epoch = report.epoch > record.epochs  # a restored trial repeats its checkpoint's epoch
        record.epochs = max(record.epochs, report.epoch)
        scheduler = record.planned.config.scheduler
        score = getattr(report, scheduler.metric, None)
        if score is not None and math.isfinite(score) and (
                record.seen_best is None or (score > record.seen_best if scheduler.mode == "max" else score < record.seen_best)):
            record.seen_best = score
        if report.best_epoch:  # the worker's verdict on which epoch is best; its checkpoint is named by it
            cfg = record.planned.config
            record.best, record.best_epoch = report.best_score, report.best_epoch
            record.best_checkpoint = cfg.layout.checkpoint(cfg.trial_key, report.best_epoch)
        record.predicted_itself = report.predicted
        retried = report.attempt > record.retries
        record.retries = max(record.retries, report.attempt)
        moved = bool(report.worker_node) and report.worker_node not in record.nodes
        if moved:
            record.nodes.append(report.worker_node)
        return ResultNews(new_epoch, retried, moved)

    @staticmethod
    def complete(record: TrialRecord, ended_by_itself: bool) -> None:
        """Tune says done both for a trial's own end and for a scheduler's stop; the worker's last report tells them apart."""
        record.status = TrialStatus.FINISHED if ended_by_itself and record.run_id is not None else TrialStatus.KILLED

    @staticmethod
    def fail(record: TrialRecord, error: str) -> None:
        record.status, record.error = TrialStatus.FAILED, error

    def paused(self, keys: Iterable[str]) -> None:
        """Trials Tune holds paused (fold_asha: waiting for sibling folds at a rung); Tune has no pause event."""
        for key in keys:
            if key in self.records and self.records[key].status is TrialStatus.RUNNING:
                self.records[key].status = TrialStatus.PAUSED

    def interrupt(self) -> list[TrialRecord]:
        """The driver is going down: open trials that have a run become INTERRUPTED (`--resume` continues them)."""
        hit = [r for r in self.records.values() if r.status.open and r.run_id is not None]
        for record in hit:
            record.status = TrialStatus.INTERRUPTED
        return hit
