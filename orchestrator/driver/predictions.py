"""OOF + test predictions of ended trials: read back, or one Ray task each from the trial's best checkpoint.

A trial that ended by itself predicted before its last report (train/loop.py,
`predict_own`), where its model and data were loaded already; its frames are read
from storage. A trial stopped by the scheduler has no actor left, so it predicts
in a task of its own; the driver collects the frames as they come in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from orchestrator.driver.trials import TrialRecord


class Predicted(NamedTuple):
    record: TrialRecord
    frames: dict[str, Any] | None  # None: it failed, with `error`
    error: Exception | None
    seconds: float  # the task's own run; 0 for frames the trial made itself


class PredictionTasks:
    def __init__(self, predict_remote: Callable[[dict[str, Any], str], Any]):
        """`predict_remote(trial config dict, checkpoint path)` -> a Ray object ref of (frames, the task's seconds)."""
        self.predict_remote = predict_remote
        self.pending: dict[Any, TrialRecord] = {}
        self.read: list[Predicted] = []

    def submit(self, record: TrialRecord) -> None:
        if record.predicted_itself:
            from orchestrator.train.predict import load_frames

            cfg = record.planned.config
            try:
                self.read.append(Predicted(record, load_frames(cfg.layout.predictions(cfg.trial_key)), None, 0.0))
            except Exception as err:  # noqa: BLE001 - the run must still end, with the reason
                self.read.append(Predicted(record, None, err, 0.0))
            return
        ref = self.predict_remote(record.planned.config.model_dump(mode="json"), record.best_checkpoint)
        self.pending[ref] = record

    def ready(self, wait: bool) -> list[Predicted]:
        """What each task that ended left (frames, or the error); wait=True: all of them."""
        import ray

        out, self.read = self.read, []
        if not self.pending:
            return out
        done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=None if wait else 0)
        for ref in done:
            record = self.pending.pop(ref)
            try:
                frames, seconds = ray.get(ref)
                out.append(Predicted(record, frames, None, seconds))
            except Exception as err:  # noqa: BLE001 - the run must still end, with the reason
                out.append(Predicted(record, None, err, 0.0))
        return out
