"""Driver-side Tune callback: turns Tune's trial events into the book, MLflow runs, predictions and progress.

It only dispatches: `TrialBook` keeps each trial's status, `TrialRuns` writes its
MLflow run, `PredictionTasks` predicts OOF + test from its best checkpoint once it
ended (completed, or stopped by the scheduler), `Progress` prints the line, and
`TimeAccount` notes when each thing happened (where the grid's time went).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial

from orchestrator.driver.predictions import PredictionTasks
from orchestrator.driver.time_account import TimeAccount
from orchestrator.driver.trial_runs import TrialRuns
from orchestrator.driver.trials import TrialBook, TrialRecord
from orchestrator.protocol import EpochReport
from orchestrator.search.schedulers import tune_trial_key
from orchestrator.storage import is_disk_full
from orchestrator.tracking.cost import trial_cost


def timed(hook: Callable) -> Callable:
    """Count a hook's seconds as the driver's (they hold up Tune's event loop)."""

    @functools.wraps(hook)
    def wrapper(self, *args, **kwargs):
        with self.account.in_driver():
            return hook(self, *args, **kwargs)

    return wrapper


class StopSwitch(Stopper):
    """Tune's stopper (`RunConfig(stop=...)`) that the callback throws to end the whole grid at once."""

    def __init__(self) -> None:
        self.thrown = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.thrown


class TrackingCallback(Callback):
    def __init__(self, book: TrialBook, runs: TrialRuns, predictions: PredictionTasks, progress: Any):
        self.book, self.runs, self.predictions, self.progress = book, runs, predictions, progress
        self.account = TimeAccount()
        self.stopper = StopSwitch()
        self.out_of_space: str | None = None  # a trial's "no space left on device": the grid stopped for it

    # ------------------------------------------------------------ tune hooks

    def setup(self, **info):
        if not self.account.stretches:  # the grid's wall starts with its first Tune run (a refit's goes on in it)
            self.account = TimeAccount()
        self.account.tune_started()

    @timed
    def on_trial_start(self, iteration, trials, trial, **info):
        record = self._record(trial)
        self.account.started(record.key)
        if self.book.start(record):
            self.runs.reopen(record)
        else:
            self.runs.open(record)
        self.progress.trial_started(record)

    @timed
    def on_trial_result(self, iteration, trials, trial, result, **info):
        record, report = self._record(trial), EpochReport.from_result(result)
        if report is None:
            return
        if not report.replay:
            self.account.reported(record.key, report.epoch_time_s, report.checkpoint_s, report.predict_s)
        news = self.book.result(record, report)
        if report.restore_note:
            self.progress.note(record, report.restore_note)
        if news.new_epoch:
            self.runs.log_epoch(record, report)
        if news.retried:
            self.runs.tag_retries(record)
            self.progress.trial_retried(record, report.epoch)
        if news.moved:
            self.runs.tag_nodes(record)
        if news.new_epoch:
            self.progress.trial_result(record, report)

    @timed
    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        self.account.left(record.key)
        last = EpochReport.from_result(trial.last_result or {})
        self.book.complete(record, ended_by_itself=last is not None and last.trial_done)
        if record.run_id is None:  # stopped before it started (fold_asha stopped its config): still one run per trial
            self.runs.open(record)
        if record.best_checkpoint is None:
            self._close(record)
            return
        self.predictions.submit(record)
        self.progress.trial_ended(record)

    @timed
    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        self.account.left(record.key)
        error = _error_text(trial)
        if is_disk_full(error):  # not the trial's fault, and every trial would meet it: stop the grid, resume later
            self.out_of_space = self.out_of_space or error
            self.stopper.thrown = True
            return  # the run stays open: interrupt_open_runs ends it INTERRUPTED, and --resume continues it
        self.book.fail(record, error)
        if record.run_id is None:  # failed before it started: still one run per trial
            self.runs.open(record)
        self.runs.log_error(record)
        self._close(record)

    @timed
    def on_step_end(self, iteration, trials, **info):
        paused = [tune_trial_key(t) for t in trials if t.status == Trial.PAUSED]
        self.book.paused(paused)
        for key in paused:
            self.account.left(key)
        self.collect_predictions()
        self.progress.tick(self.book.records.values())

    def on_experiment_end(self, trials, **info):
        ready = self.predictions.ready(wait=True)  # waiting for the last tasks is not the driver's work
        with self.account.in_driver():
            self._log_predictions(ready)
        self.account.tune_ended()

    # -------------------------------------------------------------- driver

    def interrupt_open_runs(self) -> None:
        """The driver is going down: open runs end KILLED, tagged INTERRUPTED (`--resume` continues them)."""
        for record in self.book.interrupt():
            self._charge(record)
            self.runs.interrupt(record)

    def collect_predictions(self) -> None:
        """Log every prediction task that has finished (on_experiment_end waits for the rest)."""
        self._log_predictions(self.predictions.ready(wait=False))

    def _log_predictions(self, ready: list) -> None:
        for record, frames, error, seconds in ready:
            self.account.prediction_ran(record.key, seconds)
            try:
                if error is not None:
                    raise error
                self.runs.log_predictions(record, frames)
            except Exception as err:  # noqa: BLE001 - the run must still end, with the reason
                self.book.fail(record, f"prediction from best checkpoint failed: {err}")
                self.runs.log_error(record)
            self._close(record)

    def _close(self, record: TrialRecord) -> None:
        self._charge(record)
        self.runs.close(record)
        self.progress.trial_closed(record)

    def _charge(self, record: TrialRecord) -> None:
        """Add what the trial held in this invocation to its cost (once: as its run closes)."""
        held, predicted = self.account.seconds_of(record.key)
        record.cost = record.cost + trial_cost(held, predicted, record.planned.config.resources)

    def _record(self, trial: Any) -> TrialRecord:
        return self.book.record(tune_trial_key(trial), trial.config["trial"])


def _error_text(trial: Any) -> str:
    """The trial's traceback: Tune writes it locally first (storage gets it only on the next sync)."""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        with open(path) as handle:
            return handle.read()
    return str(trial.get_error() or "trial failed (no error text recorded)")
