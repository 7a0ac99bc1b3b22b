"""Driver-side Tune callback: trial events -> MLflow child runs, predictions, progress.

A trial's life in MLflow: created RUNNING at start with its tags, params and
config; one metric batch per epoch; at the end (completed, or stopped by ASHA) a
Ray task predicts OOF + test rows from the best checkpoint, the driver logs them
with the checkpoint, and the run ends FINISHED (all epochs) or KILLED (stopped
early); a trial that raised ends FAILED with its error. A trial resumed from an
earlier invocation (`--resume`) continues its own run; epochs are the steps, so
its metric history goes on where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

from orchestrator.config import TrialConfig, lookup
from orchestrator.search.plan import PlannedTrial
from orchestrator.search.schedulers import tune_trial_key
from orchestrator.search.trainable import trial_run_dir
from orchestrator.train.loop import ATTEMPT, BEST_EPOCH, BEST_SCORE, TRIAL_DONE, WORKER_NODE, checkpoint_dir_name
from orchestrator.tracking.history import PriorTrial, metric_history
from orchestrator.tracking.mlflow_store import METRIC_KEYS, Tracker, environment_tags, flatten

@dataclass
class TrialRecord:
    """What the driver knows about one trial; becomes a row of the summary table."""

    planned: PlannedTrial
    run_id: str | None = None
    status: str = "PENDING"  # PENDING RUNNING PAUSED FINISHED KILLED FAILED (INTERRUPTED when the driver stops)
    epochs: int = 0
    best: float | None = None
    best_checkpoint: str | None = None
    error: str | None = None
    pending_prediction: Any = None
    predictions: bool = False
    retries: int = 0
    nodes: list[str] = field(default_factory=list)  # where its rank-0 worker ran, in order (a retry may move it)
    reused: bool = False  # ended in an earlier invocation; not trained in this one


class TrackingCallback(Callback):
    def __init__(self, tracker: Tracker, parent_id: str, plan: list[PlannedTrial], predict_remote: Any, progress: Any,
                 axes: list[str] = (), continued: dict[str, PriorTrial] | None = None,
                 reused: list[tuple[PlannedTrial, PriorTrial]] = ()):
        """`plan`: the trials to run; `continued`: the earlier runs some of them go on in; `reused`: ended ones, for the summary."""
        self.tracker, self.parent_id, self.predict_remote, self.progress = tracker, parent_id, predict_remote, progress
        self.axes = list(axes)  # search paths: read back from trials nobody planned ahead (searcher: optuna)
        self.records = {p.key: TrialRecord(p) for p in plan}
        for key, old in (continued or {}).items():  # the run's history goes on after the last epoch it holds
            self.records[key].run_id = old.run_id
            self.records[key].epochs = max(metric_history(tracker, old.run_id, "val_loss"), default=0)
            self.records[key].nodes = list(old.nodes)
        for p, old in reused:
            self.records[p.key] = TrialRecord(p, old.run_id, old.status, old.epochs, old.best, predictions=old.predictions,
                                              reused=True)

    # ------------------------------------------------------------ tune hooks

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self._record(trial)
        cfg = record.planned.config
        record.status = "RUNNING"
        if record.run_id is not None:  # resumed (--resume), or unpaused by fold-aware ASHA: the same run goes on
            self.tracker.reopen_run(record.run_id, {"status": "RUNNING"})
            self.progress.trial_started(record)
            return
        record.run_id = self.tracker.start_run(
            cfg.trial_key, "trial", parent_id=self.parent_id,
            tags={"config_id": cfg.config_id, "fold": str(cfg.fold), "model": cfg.model.name,
                  "trial_key": cfg.trial_key, "status": "RUNNING", **environment_tags()},
        )
        self.tracker.log_params(record.run_id, flatten(cfg.model_dump(mode="json", exclude={"tables", "storage"})))
        self.tracker.log_text(record.run_id, json.dumps(cfg.model_dump(mode="json"), indent=2), "trial_config.json")
        self.progress.trial_started(record)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        metrics = {k: result[k] for k in METRIC_KEYS if k in result}
        epoch = int(result.get("epoch", record.epochs + 1))
        if epoch <= record.epochs:  # a restored trial repeats its checkpoint's epoch: logged already
            metrics = {}
        record.epochs = max(record.epochs, epoch)
        self.tracker.log_metrics(record.run_id, metrics, step=epoch)
        if result.get(BEST_EPOCH):  # the worker's verdict on which epoch is best; its checkpoint folder is named by it
            cfg = record.planned.config
            record.best = result[BEST_SCORE]
            record.best_checkpoint = f"{trial_run_dir(cfg.storage, cfg.trial_key)}/{checkpoint_dir_name(int(result[BEST_EPOCH]))}"
        if int(result.get(ATTEMPT, 0)) > record.retries:
            record.retries = int(result[ATTEMPT])
            self.tracker.set_tags(record.run_id, {"retries": str(record.retries)})
            self.progress.trial_retried(record, epoch)
        if result.get(WORKER_NODE) and result[WORKER_NODE] not in record.nodes:
            record.nodes.append(result[WORKER_NODE])
            self.tracker.set_tags(record.run_id, {"nodes": ",".join(record.nodes)})
        if metrics:
            self.progress.trial_result(record, metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        # Tune marks a scheduler STOP as `done` too; the worker says whether it ended by itself
        record.status = "FINISHED" if (trial.last_result or {}).get(TRIAL_DONE) == 1.0 else "KILLED"
        if record.run_id is None:  # stopped before it started (fold-aware ASHA stopped its config)
            self.on_trial_start(iteration, trials, trial)
            record.status = "KILLED"
        if record.best_checkpoint is None:
            self._end(record)
            return
        record.pending_prediction = self.predict_remote(record.planned.config.model_dump(mode="json"), record.best_checkpoint)
        self.progress.trial_ended(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record.status = "FAILED"
        record.error = _error_text(trial)
        if record.run_id is None:  # failed before it started: still one run per trial
            self.on_trial_start(iteration, trials, trial)
            record.status = "FAILED"
        self.tracker.log_text(record.run_id, record.error, "error.txt")
        self._end(record)

    def on_step_end(self, iteration, trials, **info):
        for trial in trials:  # Tune has no pause hook: fold_asha pauses a fold that waits for its siblings
            if trial.status == "PAUSED" and self._record(trial).status == "RUNNING":
                self._record(trial).status = "PAUSED"
        self.collect_predictions(wait=False)
        self.progress.tick(self.records.values())

    def on_experiment_end(self, trials, **info):
        self.collect_predictions(wait=True)

    def interrupt_open_runs(self) -> None:
        """The driver is going down: open runs end KILLED, tagged INTERRUPTED (`--resume` continues them)."""
        for record in self.records.values():
            if record.status in ("RUNNING", "PAUSED", "PENDING") and record.run_id is not None:
                record.status = "INTERRUPTED"
                self.tracker.end_run(record.run_id, "KILLED", {"status": "INTERRUPTED", "epochs": str(record.epochs)})

    # -------------------------------------------------------------- helpers

    def collect_predictions(self, wait: bool) -> None:
        """Log every finished prediction task; with wait=True, all of them."""
        import ray

        pending = {r.pending_prediction: r for r in self.records.values() if r.pending_prediction is not None}
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=None if wait else 0)
        for ref in ready:
            record = pending[ref]
            record.pending_prediction = None
            try:
                self._log_predictions(record, ray.get(ref))
            except Exception as err:  # noqa: BLE001 - the run must still end, with the reason
                record.status, record.error = "FAILED", f"prediction from best checkpoint failed: {err}"
                self.tracker.log_text(record.run_id, record.error, "error.txt")
            self._end(record)

    def _log_predictions(self, record: TrialRecord, frames: dict[str, Any]) -> None:
        from orchestrator.tracking.plots import confusion_figure

        self.tracker.log_metrics(record.run_id, frames.pop("metrics", {}), step=record.epochs)
        self.tracker.log_frames(record.run_id, frames)
        oof = frames["oof"]
        self.tracker.log_figure(record.run_id, confusion_figure(oof), "confusion_matrix.png")
        self.tracker.log_file(record.run_id, _local_model_file(record.best_checkpoint), "checkpoint")
        record.predictions = True

    def _end(self, record: TrialRecord) -> None:
        tags = {"status": record.status, "epochs": str(record.epochs), "predictions": str(record.predictions).lower()}
        if record.best is not None:
            self.tracker.log_metrics(record.run_id, {f"best_{record.planned.config.scheduler.metric}": record.best}, step=record.epochs)
        self.tracker.end_run(record.run_id, record.status, tags)
        self.progress.trial_closed(record)

    def _record(self, trial: Any) -> TrialRecord:
        cfg, key = trial.config["trial"], tune_trial_key(trial)
        if key not in self.records:  # proposed during the run by a searcher
            searched = {path: lookup(cfg, path, where=path) for path in self.axes}
            self.records[key] = TrialRecord(PlannedTrial(TrialConfig.model_validate(cfg), searched))
        return self.records[key]


def _error_text(trial: Any) -> str:
    """The trial's traceback: Tune writes it locally first (storage gets it only on the next sync)."""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        with open(path) as handle:
            return handle.read()
    return str(trial.get_error() or "trial failed (no error text recorded)")


def _local_model_file(checkpoint_path: str) -> str:
    """The checkpoint's model.pt on this machine (downloaded when storage is remote)."""
    import tempfile

    import ray.train

    from orchestrator.storage import is_uri
    from orchestrator.train.checkpoint import MODEL_FILE

    checkpoint = ray.train.Checkpoint(checkpoint_path)
    local = checkpoint.to_directory(tempfile.mkdtemp()) if is_uri(checkpoint_path) else checkpoint_path
    return f"{local}/{MODEL_FILE}"
