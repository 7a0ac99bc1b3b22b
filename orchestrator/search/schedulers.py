"""Tune trial schedulers by name (the grid's `scheduler.kind`).

Every scheduler counts time in the trial's own `epoch` (not Tune's iteration), so
a trial resumed from epoch 5 in a later run sits on the same rungs as before.
"""

from __future__ import annotations

from typing import Any, Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from orchestrator.config import TuneSchedulerConfig, trial_key
from orchestrator.search.fold_rungs import FoldRungs, Verdict, rung_epochs

TIME_ATTR = "epoch"


def _asha(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=TIME_ATTR, max_t=max_epochs,
                         grace_period=min(cfg.grace_period, max_epochs), reduction_factor=cfg.reduction_factor)


def _fifo(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    return FIFOScheduler()


def _fold_asha(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    return FoldASHA(cfg.metric, cfg.mode, rung_epochs(cfg.grace_period, cfg.reduction_factor, max_epochs), cfg.reduction_factor)


SCHEDULERS: dict[str, Callable[[TuneSchedulerConfig, int], Any]] = {"asha": _asha, "fifo": _fifo, "fold_asha": _fold_asha}


def create_scheduler(cfg: TuneSchedulerConfig, max_epochs: int) -> Any:
    return SCHEDULERS[cfg.kind](cfg, max_epochs)


def trial_identity(trial: Trial) -> tuple[str, int]:
    """(config_id, fold) of a Tune trial, read from the TrialConfig dict it carries."""
    cfg = trial.config["trial"]
    return cfg["config_id"], int(cfg["fold"])


def tune_trial_key(trial: Trial) -> str:
    return trial_key(*trial_identity(trial))


def config_folds(trial: Trial) -> list[int]:
    """Every fold the trial's config trains (Tune may not have created the siblings' trials yet)."""
    from orchestrator.config import FoldsConfig

    return FoldsConfig.model_validate(trial.config["trial"]["data"]["folds"]).folds_to_train()


class FoldASHA(FIFOScheduler):
    """ASHA that judges configs, not trials: the folds of a config pass or stop together.

    A fold that reaches a rung first keeps running while its sibling folds are all
    running too (they will be there within the epoch). If a sibling has no slot
    (pending, or paused), the fold pauses at the rung, which frees its slot for the
    sibling; Ray Train resumes it from its checkpoint once the config passes.
    With at least as many trial slots as folds nothing ever pauses.
    """

    def __init__(self, metric: str, mode: str, rungs: list[int], reduction_factor: float):
        super().__init__()
        self._metric, self._mode = metric, mode
        self.board = FoldRungs(rungs, reduction_factor, mode)
        self.trials: dict[str, list[Trial]] = {}
        self.waiting: dict[str, int] = {}  # paused trial id -> the rung it waits at
        self.stopping: set[str] = set()  # trial ids this scheduler is stopping (stop_trial calls back in)
        self.chosen: set[str] = set()  # pending trials handed to Tune already (it is starting them)
        self.pausing = True  # off where Tune's max_concurrent_trials caps trials (it counts paused ones: deadlock)

    def seed(self, config_id: str, fold: int, history: dict[int, float], ended: bool) -> None:
        """An earlier run's scores; an ended fold (reused, not run again) is not waited for past its last epoch."""
        self.board.seed(config_id, fold, history)
        if ended:
            self.board.drop(config_id, fold, max(history, default=0))

    # ------------------------------------------------------------ tune hooks

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode come from the grid, fixed at construction

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if not self.trials:
            self.board.settle_seeds()
        config_id, _ = trial_identity(trial)
        if config_id not in self.trials:
            for fold in config_folds(trial):
                self.board.expect(config_id, fold)
        self.trials.setdefault(config_id, []).append(trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if TIME_ATTR not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        config_id, fold = trial_identity(trial)
        epoch = int(result[TIME_ATTR])
        verdict = self.board.record(config_id, fold, epoch, float(result[self._metric]))
        if verdict is Verdict.STOP:
            self._stop_idle_siblings(tune_controller, config_id)
            return TrialScheduler.STOP
        if verdict is Verdict.WAIT:
            if self.pausing and not self._siblings_running(config_id, epoch):
                self.waiting[trial.trial_id] = epoch
                self.chosen.discard(trial.trial_id)
                return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._fold_left(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._fold_left(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._fold_left(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Folds that others wait for first, then folds whose config passed their rung, then the plan order."""
        ready = []
        for index, trial in enumerate(tune_controller.get_trials()):
            if trial.status not in (Trial.PENDING, Trial.PAUSED) or trial.trial_id in self.chosen:
                continue
            config_id, _ = trial_identity(trial)
            if self.board.is_stopped(config_id):
                continue
            if trial.status == Trial.PAUSED:
                rung = self.waiting.get(trial.trial_id)
                if rung is not None and not self.board.has_passed(config_id, rung):
                    continue
            awaited = any(self.waiting.get(t.trial_id) for t in self.trials[config_id] if t.status == Trial.PAUSED)
            ready.append((0 if awaited and trial.status == Trial.PENDING else 1 if trial.status == Trial.PAUSED else 2,
                          index, trial))
        if not ready:
            return None
        trial = min(ready, key=lambda item: item[:2])[2]
        self.waiting.pop(trial.trial_id, None)
        self.chosen.add(trial.trial_id)
        return trial

    def debug_string(self) -> str:
        stopped = sum(self.board.is_stopped(c) for c in self.trials)
        return f"FoldASHA: rungs {self.board.rungs}, {stopped}/{len(self.trials)} configs stopped"

    # -------------------------------------------------------------- helpers

    def _siblings_running(self, config_id: str, rung: int) -> bool:
        """Whether every fold still to reach `rung` is running (so it gets there without help)."""
        counted = self.board.configs[config_id].folds
        behind = counted - self.board.reached(config_id, rung)
        running = {trial_identity(t)[1] for t in self.trials[config_id] if t.status == Trial.RUNNING}
        return behind <= running

    def _fold_left(self, tune_controller, trial: Trial) -> None:
        config_id, fold = trial_identity(trial)
        last_epoch = int((trial.last_result or {}).get(TIME_ATTR, 0))
        self.board.drop(config_id, fold, last_epoch)
        if self.board.is_stopped(config_id):
            self._stop_idle_siblings(tune_controller, config_id)

    def _stop_idle_siblings(self, tune_controller, config_id: str) -> None:
        """Pending and paused folds of a stopped config end now; running ones at their next report."""
        for sibling in self.trials[config_id]:
            if sibling.status in (Trial.PENDING, Trial.PAUSED) and sibling.trial_id not in self.stopping:
                self.stopping.add(sibling.trial_id)
                self.waiting.pop(sibling.trial_id, None)
                tune_controller.stop_trial(sibling)
