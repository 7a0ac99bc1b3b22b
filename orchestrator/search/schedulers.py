"""Tune trial schedulers by name (the grid's `scheduler.kind`).

Every scheduler counts time in the trial's own `epoch` (not Tune's iteration), so
a trial resumed from epoch 5 in a later run sits on the same rungs as before.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from orchestrator.config import FoldsConfig, GridConfig, TuneSchedulerConfig, trial_key
from orchestrator.protocol import TIME_ATTR, EpochReport, check_stop
from orchestrator.search.fold_rungs import FoldRungs, FoldSeed, Verdict

Seeds = dict[tuple[str, int], FoldSeed]  # (config_id, fold) -> what an earlier run of it left


def max_epochs(grid: GridConfig) -> int:
    """The longest epoch budget any trial of the grid can have (`train.epochs` may be a search axis)."""
    axis = grid.search.get("train.epochs")
    return max([grid.train.epochs, *(int(v) for v in axis.extremes())] if axis else [grid.train.epochs])


class CheckedASHA(ASHAScheduler):
    """Tune's ASHA, holding the rule pruning relies on (protocol.check_stop)."""

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and (report := EpochReport.from_result(result)) is not None:
            check_stop(report, tune_trial_key(trial))
        return decision


def _asha(cfg: TuneSchedulerConfig, epochs: int, pausing: bool, seeds: Seeds) -> TrialScheduler:
    # max_t covers the longest trial; a shorter one ends by itself at its own last epoch
    return CheckedASHA(time_attr=TIME_ATTR, max_t=epochs,
                       grace_period=min(cfg.grace_period, epochs), reduction_factor=cfg.reduction_factor)


def _fifo(cfg: TuneSchedulerConfig, epochs: int, pausing: bool, seeds: Seeds) -> TrialScheduler:
    return FIFOScheduler()


def _fold_asha(cfg: TuneSchedulerConfig, epochs: int, pausing: bool, seeds: Seeds) -> TrialScheduler:
    rungs = cfg.rung_epochs(epochs)
    return FoldASHA(cfg.metric, cfg.mode, rungs, cfg.reduction_factor, pausing=pausing, seeds=seeds)


SCHEDULERS: dict[str, Callable[[TuneSchedulerConfig, int, bool, Seeds], TrialScheduler]] = {
    "asha": _asha, "fifo": _fifo, "fold_asha": _fold_asha}


def create_scheduler(grid: GridConfig, pausing: bool = True, seeds: Seeds | None = None) -> TrialScheduler:
    """The grid's `scheduler.kind`, its rungs up to the longest trial's epochs.

    `pausing`: whether fold_asha may pause a fold for its siblings (not where Tune's
    max_concurrent_trials caps trials: it counts paused ones, a deadlock); `seeds`:
    earlier runs' scores, which fold_asha's rungs start from.
    """
    return SCHEDULERS[grid.scheduler.kind](grid.scheduler, max_epochs(grid), pausing, seeds or {})


def trial_identity(trial: Trial) -> tuple[str, int]:
    """(config_id, fold) of a Tune trial, read from the TrialConfig dict it carries."""
    cfg = trial.config["trial"]
    return cfg["config_id"], int(cfg["fold"])


def tune_trial_key(trial: Trial) -> str:
    return trial_key(*trial_identity(trial))


def trial_epochs(trial: Trial) -> int:
    """The trial's own epoch budget."""
    return int(trial.config["trial"]["train"]["epochs"])


def config_folds(trial: Trial) -> list[int]:
    """Every fold the trial's config trains (Tune may not have created the siblings' trials yet)."""
    return FoldsConfig.model_validate(trial.config["trial"]["data"]["folds"]).folds_to_train()


class FoldASHA(FIFOScheduler):
    """ASHA that judges configs, not trials: the folds of a config pass or stop together.

    A fold that reaches a rung first keeps running while its sibling folds are all
    running too (they will be there within the epoch). If a sibling has no slot
    (pending, or paused), the fold pauses at the rung, which frees its slot for the
    sibling; Ray Train resumes it from its checkpoint once the config passes.
    With at least as many trial slots as folds nothing ever pauses.
    """

    def __init__(self, metric: str, mode: str, rungs: list[int], reduction_factor: float, pausing: bool = True,
                 seeds: Seeds | None = None):
        super().__init__()
        self._metric, self._mode = metric, mode
        self.board = FoldRungs(rungs, reduction_factor, mode)
        self.trials: dict[str, list[Trial]] = {}
        self.waiting: dict[str, int] = {}  # paused trial id -> the rung it waits at
        self.stopping: set[str] = set()  # trial ids this scheduler is stopping (stop_trial calls back in)
        self.chosen: set[str] = set()  # pending trials handed to Tune already (it is starting them)
        self.pausing = pausing
        for (config_id, fold), seed in (seeds or {}).items():
            self.board.seed(config_id, fold, seed.history)
            if seed.ended:  # reused, not run again: not waited for past its last epoch
                self.board.drop(config_id, fold, max(seed.history, default=0))

    # ------------------------------------------------------------ tune hooks

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode come from the grid, fixed at construction

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if not self.trials:
            self.board.settle_seeds()
        config_id, _ = trial_identity(trial)
        if config_id not in self.trials:
            for fold in config_folds(trial):
                self.board.expect(config_id, fold, trial_epochs(trial))
        self.trials.setdefault(config_id, []).append(trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        report = EpochReport.from_result(result)
        if report is None:
            return TrialScheduler.CONTINUE
        config_id, fold = trial_identity(trial)
        epoch = report.epoch
        verdict = self.board.record(config_id, fold, epoch, float(getattr(report, self._metric)))
        if verdict is Verdict.STOP:
            check_stop(report, tune_trial_key(trial))
            self._stop_idle_siblings(tune_controller, config_id)
            return TrialScheduler.STOP
        if verdict is Verdict.WAIT and self.pausing and not self._siblings_close(config_id, epoch):
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

    def _siblings_close(self, config_id: str, rung: int) -> bool:
        """Whether every fold still to reach `rung` is running and at most one epoch short of it.

        Then the fold at the rung trains on (at most an epoch past it) rather than paying a
        restart. A sibling further behind (it started late) could let this fold run past its
        config's last rung and finish before the config is judged: this fold waits instead.
        """
        counted = self.board.configs[config_id].folds
        behind = counted - self.board.reached(config_id, rung)
        close = {trial_identity(t)[1] for t in self.trials[config_id]
                 if t.status == Trial.RUNNING and int((t.last_result or {}).get(TIME_ATTR, 0)) >= rung - 1}
        return behind <= close

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
