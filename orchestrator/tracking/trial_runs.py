"""A trial's MLflow child run: opened at its start, a metric batch per epoch, artifacts and status at its end.

A trial continued from an earlier invocation (`--resume`) or unpaused by fold_asha
goes on in its own run; epochs are the steps, so its history goes on where it stopped.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.layout import RunFiles
from orchestrator.protocol import EpochReport, TrialStatus
from orchestrator.tracking.mlflow_store import Tracker, environment_tags, flatten
from orchestrator.tracking.trials import TrialRecord


class TrialRuns:
    def __init__(self, tracker: Tracker, parent_id: str):
        self.tracker, self.parent_id = tracker, parent_id

    def open(self, record: TrialRecord) -> None:
        """A new child run under the grid's parent: identity tags, the resolved config as params and as a file."""
        cfg = record.planned.config
        record.run_id = self.tracker.start_run(
            cfg.trial_key, "trial", parent_id=self.parent_id,
            tags={"config_id": cfg.config_id, "fold": str(cfg.fold), "model": cfg.model.name,
                  "trial_key": cfg.trial_key, "status": str(TrialStatus.RUNNING), **environment_tags()},
        )
        self.tracker.log_params(record.run_id, flatten(cfg.model_dump(mode="json", exclude={"tables", "storage"})))
        self.tracker.log_text(record.run_id, json.dumps(cfg.model_dump(mode="json"), indent=2), RunFiles.TRIAL_CONFIG)

    def reopen(self, record: TrialRecord) -> None:
        self.tracker.reopen_run(record.run_id, {"status": str(TrialStatus.RUNNING)})

    def log_epoch(self, record: TrialRecord, report: EpochReport) -> None:
        self.tracker.log_metrics(record.run_id, report.metrics(), step=report.epoch)

    def tag_retries(self, record: TrialRecord) -> None:
        self.tracker.set_tags(record.run_id, {"retries": str(record.retries)})

    def tag_nodes(self, record: TrialRecord) -> None:
        self.tracker.set_tags(record.run_id, {"nodes": ",".join(record.nodes)})

    def log_error(self, record: TrialRecord) -> None:
        self.tracker.log_text(record.run_id, record.error or "", RunFiles.ERROR)

    def log_predictions(self, record: TrialRecord, frames: dict[str, Any]) -> None:
        """OOF (+ test) frames, their OOF scores, a confusion matrix and the best checkpoint's weights."""
        from orchestrator.tracking.plots import confusion_figure

        self.tracker.log_metrics(record.run_id, frames.pop("metrics", {}), step=record.epochs)
        self.tracker.log_frames(record.run_id, frames)
        self.tracker.log_figure(record.run_id, confusion_figure(frames["oof"]), RunFiles.CONFUSION)
        self.tracker.log_file(record.run_id, _local_model_file(record.best_checkpoint), RunFiles.CHECKPOINT)
        record.predictions = True

    def close(self, record: TrialRecord) -> None:
        """End the run with the record's status, epochs and best score."""
        tags = {"status": str(record.status), "epochs": str(record.epochs), "predictions": str(record.predictions).lower()}
        if record.best is not None:
            self.tracker.log_metrics(record.run_id, {f"best_{record.planned.config.scheduler.metric}": record.best},
                                     step=record.epochs)
        self.tracker.end_run(record.run_id, record.status.mlflow_status, tags)

    def interrupt(self, record: TrialRecord) -> None:
        self.tracker.end_run(record.run_id, record.status.mlflow_status, {"status": str(record.status), "epochs": str(record.epochs)})


def _local_model_file(checkpoint_path: str) -> str:
    """The checkpoint's model.pt on this machine (downloaded when storage is remote)."""
    import tempfile

    import ray.train

    from orchestrator.storage import is_uri
    from orchestrator.train.checkpoint import MODEL_FILE

    checkpoint = ray.train.Checkpoint(checkpoint_path)
    local = checkpoint.to_directory(tempfile.mkdtemp()) if is_uri(checkpoint_path) else checkpoint_path
    return f"{local}/{MODEL_FILE}"
