"""A trial's MLflow child run: opened at its start, a metric batch per epoch, artifacts and status at its end.

A trial continued from an earlier invocation (`--resume`) or unpaused by fold_asha
goes on in its own run; epochs are the steps, so its history goes on where it stopped.
During the grid the writes go through the driver's TrackingWriter (tracking/writer.py):
a new run's id is a RunHandle until the writer has created it, and `settle` turns
the handles into ids once the writes are in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.driver.trials import TrialRecord
from orchestrator.layout import RunFiles
from orchestrator.protocol import EpochReport, TrialStatus
from orchestrator.tracking.mlflow_store import SEARCH_PREFIX, Tracker, environment_tags, flatten


class TrialRuns:
    def __init__(self, tracker: Tracker, parent_id: str, classes: list[str], datasets: list[Any] = (), top_pairs: int = 20):
        """`classes`: names by target index; `datasets`: the grid's dataset inputs (`dataset_input`), logged to every
        trial's run; `top_pairs`: confused pairs a figure shows where a matrix has too many classes to name."""
        self.tracker, self.parent_id, self.classes, self.datasets = tracker, parent_id, classes, list(datasets)
        self.top_pairs = top_pairs

    def open(self, record: TrialRecord) -> None:
        """A new child run under the grid's parent: identity tags, the searched values and the model as params
        (what compare views should list: every other setting is the grid's, on the parent), the resolved
        config as a file, the data as its dataset input."""
        cfg = record.planned.config
        record.run_id = self.tracker.start_run(
            cfg.trial_key, "trial", parent_id=self.parent_id,
            tags={"config_id": cfg.config_id, "fold": str(cfg.fold), "model": cfg.model.name,
                  "trial_key": cfg.trial_key, "status": str(TrialStatus.RUNNING), **environment_tags(),
                  **({"refit": "true"} if cfg.refit else {})},
        )
        self.tracker.log_params(record.run_id, searched_params(record))
        self.tracker.log_text(record.run_id, json.dumps(cfg.model_dump(mode="json"), indent=2), RunFiles.TRIAL_CONFIG)
        self.tracker.log_datasets(record.run_id, self.datasets)

    def settle(self, records: Iterable[TrialRecord], drain: Callable[[], None]) -> None:
        """Wait for the writes (`drain`), then give each record its run's MLflow id in place of a RunHandle."""
        drain()
        for record in records:
            record.run_id = getattr(record.run_id, "id", record.run_id)

    def reopen(self, record: TrialRecord) -> None:
        self.tracker.reopen_run(record.run_id, {"status": str(TrialStatus.RUNNING)})

    def log_epoch(self, record: TrialRecord, report: EpochReport) -> None:
        self.tracker.log_metrics(record.run_id, {**report.metrics(), **report.heads, **report.system_metrics()}, step=report.epoch)

    def tag_retries(self, record: TrialRecord) -> None:
        self.tracker.set_tags(record.run_id, {"retries": str(record.retries)})

    def tag_nodes(self, record: TrialRecord) -> None:
        self.tracker.set_tags(record.run_id, {"nodes": ",".join(record.nodes)})

    def log_error(self, record: TrialRecord) -> None:
        self.tracker.log_text(record.run_id, record.error or "", RunFiles.ERROR)

    def log_predictions(self, record: TrialRecord, frames: dict[str, Any]) -> None:
        """OOF (+ test) frames, their OOF scores, the fold's confusion matrix (named) and the best checkpoint's weights
        (a refit: its test frame and weights)."""
        self.tracker.log_metrics(record.run_id, frames.pop("metrics", {}), step=record.epochs)
        self.tracker.log_frames(record.run_id, frames)
        if "oof" in frames and "tags" not in frames["oof"]:  # tags: per-tag tables at the config's insight instead
            self._log_confusion(record, frames["oof"])
        # read from storage in the writer's turn (a bucket download never holds Tune's loop); storage is released
        # only after the writer drained
        from orchestrator.storage import join
        from orchestrator.train.checkpoint import MODEL_FILE  # torch: only a run that trained needs it

        self.tracker.log_stored_file(record.run_id, join(record.best_checkpoint, MODEL_FILE), RunFiles.CHECKPOINT)
        record.predictions = True

    def _log_confusion(self, record: TrialRecord, oof) -> None:
        from orchestrator.tracking.insight import outcomes

        targets, predicted = outcomes(oof)  # drawn in the writer's turn
        self.tracker.log_confusion(record.run_id, targets, predicted, self.classes, self.top_pairs, f"{record.key} OOF",
                                   RunFiles.CONFUSION)

    def close(self, record: TrialRecord) -> None:
        """End the run with the record's status, epochs and best score."""
        tags = {"status": str(record.status), "epochs": str(record.epochs), "predictions": str(record.predictions).lower()}
        best = {} if record.best is None else {f"best_{record.planned.config.scheduler.metric}": record.best}
        self.tracker.log_metrics(record.run_id, {**best, **record.cost.metrics()}, step=record.epochs)
        self.tracker.describe(record.run_id, trial_note(record))
        self.tracker.end_run(record.run_id, record.status.mlflow_status, tags)

    def interrupt(self, record: TrialRecord) -> None:
        self.tracker.log_metrics(record.run_id, record.cost.metrics(), step=record.epochs)
        self.tracker.end_run(record.run_id, record.status.mlflow_status, {"status": str(record.status), "epochs": str(record.epochs)})


def trial_note(record: TrialRecord) -> str:
    """The run's description: what it is, how it ended, what it cost."""
    cfg = record.planned.config
    searched = ", ".join(f"`{path}` = {value}" for path, value in record.planned.searched.items()) or "no searched values"
    best = "no score" if record.best is None else f"best {cfg.scheduler.metric} {record.best:.4f}"
    how = {TrialStatus.FINISHED: "ran to its end", TrialStatus.KILLED: "stopped early by the scheduler"}.get(
        record.status, str(record.status))
    what = (f"refit of config `{cfg.config_id}` on every training row, {cfg.train.epochs} epochs" if cfg.refit
            else f"fold {cfg.fold} of config `{cfg.config_id}`")
    return (f"**{cfg.model.name}**, {what} ({searched}).\n\n"
            f"{how} after {record.epochs} epoch(s); {best}; {record.cost.wall_s:.0f} s, {record.cost.render()}."
            + (f"\n\nError: `{record.error.strip().splitlines()[-1][:300]}`" if record.error else ""))


def searched_params(record: TrialRecord) -> dict[str, str]:
    """`search.<path>` for each searched value, and `model` (a grid's models are an axis of its own)."""
    values = {f"{SEARCH_PREFIX}{path}": value for path, value in record.planned.searched.items()}
    return {"model": record.planned.config.model.name, **flatten(values)}

