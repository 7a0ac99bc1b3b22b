"""OOF + test predictions of ended trials: one Ray task each, from the trial's best checkpoint.

A trial stopped by the scheduler has no actor left, so every trial alike predicts
in a task of its own; the driver collects the frames as they come in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.tracking.trials import TrialRecord


class PredictionTasks:
    def __init__(self, predict_remote: Callable[[dict[str, Any], str], Any]):
        """`predict_remote(trial config dict, checkpoint path)` -> a Ray object ref of the frames."""
        self.predict_remote = predict_remote
        self.pending: dict[Any, TrialRecord] = {}

    def submit(self, record: TrialRecord) -> None:
        ref = self.predict_remote(record.planned.config.model_dump(mode="json"), record.best_checkpoint)
        self.pending[ref] = record

    def ready(self, wait: bool) -> list[tuple[TrialRecord, dict[str, Any] | None, Exception | None]]:
        """(record, frames, None) or (record, None, error) for each task that ended; wait=True: all of them."""
        import ray

        if not self.pending:
            return []
        done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=None if wait else 0)
        out = []
        for ref in done:
            record = self.pending.pop(ref)
            try:
                out.append((record, ray.get(ref), None))
            except Exception as err:  # noqa: BLE001 - the run must still end, with the reason
                out.append((record, None, err))
        return out
