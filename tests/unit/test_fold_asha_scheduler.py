"""Fold-aware ASHA's Tune side on a fake trial runner: decisions, pauses, resumes, each trial's own budget."""

from __future__ import annotations

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from orchestrator.config import parse_grid
from orchestrator.protocol import EpochReport
from orchestrator.search.fold_rungs import FoldSeed
from orchestrator.search.schedulers import FoldASHA, create_scheduler, max_epochs


class FakeTrial:
    def __init__(self, config_id: str, fold: int, folds: int, epochs: int = 9):
        self.trial_id = f"{config_id}-f{fold}"
        self.config = {"trial": {"config_id": config_id, "fold": fold, "train": {"epochs": epochs},
                                 "data": {"folds": {"kind": "stratified", "n_splits": folds}}}}
        self.status = Trial.PENDING
        self.last_result: dict = {}


class FakeRunner:
    """What FoldASHA asks of Tune's controller: the trials, and stopping one."""

    def __init__(self, scheduler: FoldASHA, trials: list[FakeTrial]):
        self.scheduler, self.trials, self.stopped = scheduler, trials, []
        for trial in trials:
            scheduler.on_trial_add(self, trial)

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = Trial.TERMINATED
        self.stopped.append(trial.trial_id)

    def start(self) -> FakeTrial:
        trial = self.scheduler.choose_trial_to_run(self)
        trial.status = Trial.RUNNING
        return trial

    def report(self, trial: FakeTrial, epoch: int, score: float) -> str:
        trial.last_result = EpochReport(epoch=epoch, val_acc=score).as_result()
        decision = self.scheduler.on_trial_result(self, trial, trial.last_result)
        if decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
        return decision


def fold_asha(pausing=True, seeds=None) -> FoldASHA:
    return FoldASHA("val_acc", "max", rungs=[1, 3], reduction_factor=3, pausing=pausing, seeds=seeds)


def test_a_fold_at_a_rung_pauses_for_a_sibling_without_a_slot_and_resumes_when_its_config_passes():
    runner = FakeRunner(fold_asha(), [FakeTrial("a", f, folds=3) for f in range(3)])
    f0, f1 = runner.start(), runner.start()  # two slots
    assert (f0.trial_id, f1.trial_id) == ("a-f0", "a-f1")
    assert runner.report(f0, 1, 0.5) == TrialScheduler.PAUSE  # fold 2 has no slot: f0 frees its own
    f2 = runner.start()
    assert f2.trial_id == "a-f2"  # the fold others wait for goes first
    assert runner.scheduler.choose_trial_to_run(runner) is None  # f0 waits until its config passes rung 1
    assert runner.report(f1, 1, 0.5) == TrialScheduler.CONTINUE  # every fold still to come is running
    assert runner.report(f2, 1, 0.5) == TrialScheduler.CONTINUE  # rung complete: the config passes
    assert runner.scheduler.choose_trial_to_run(runner) is f0  # resumed from its checkpoint


def test_a_config_below_the_cutoff_stops_on_every_fold_including_paused_and_pending_ones():
    trials = [FakeTrial(c, f, folds=2) for c in ("good", "bad") for f in range(2)]
    runner = FakeRunner(fold_asha(), trials)
    good0, good1, bad0 = runner.start(), runner.start(), runner.start()
    assert runner.report(good0, 1, 0.9) == TrialScheduler.CONTINUE  # its sibling is running
    assert runner.report(good1, 1, 0.9) == TrialScheduler.CONTINUE
    assert runner.report(bad0, 1, 0.1) == TrialScheduler.PAUSE  # its sibling is still pending
    bad1 = runner.start()
    assert bad1.trial_id == "bad-f1"
    assert runner.report(bad1, 1, 0.1) == TrialScheduler.STOP  # mean 0.1 < 0.9: judged out
    assert runner.stopped == ["bad-f0"]  # the paused fold ends now, not at a report it will never make


def test_without_pausing_a_fold_keeps_training_past_the_rung():
    runner = FakeRunner(fold_asha(pausing=False), [FakeTrial("a", f, folds=3) for f in range(3)])
    f0 = runner.start()
    assert runner.report(f0, 1, 0.5) == TrialScheduler.CONTINUE


def test_a_trial_at_its_own_last_epoch_never_pauses():
    runner = FakeRunner(fold_asha(), [FakeTrial("short", f, folds=2, epochs=1) for f in range(2)])
    f0 = runner.start()
    assert runner.report(f0, 1, 0.5) == TrialScheduler.CONTINUE  # epoch 1 of 1: it ends by itself


def test_seeds_from_earlier_runs_judge_new_configs():
    seeds = {("old", f): FoldSeed({1: 0.9, 2: 0.9, 3: 0.9}, ended=True) for f in range(2)}
    runner = FakeRunner(fold_asha(seeds=seeds), [FakeTrial("new", f, folds=2) for f in range(2)])
    new0, new1 = runner.start(), runner.start()
    assert runner.report(new0, 1, 0.2) == TrialScheduler.CONTINUE
    assert runner.report(new1, 1, 0.2) == TrialScheduler.STOP  # 0.2 against the old config's 0.9 at rung 1


@pytest.mark.parametrize("kind", ["asha", "fold_asha", "fifo"])
def test_epochs_as_a_search_axis_sets_the_schedulers_horizon(minimal_grid, kind):
    minimal_grid["train"]["epochs"] = 2
    minimal_grid["search"] = {"train.epochs": {"grid": [2, 9]}}
    minimal_grid["scheduler"] = {"kind": kind, "grace_period": 1, "reduction_factor": 3}
    grid = parse_grid(minimal_grid)
    assert max_epochs(grid) == 9
    scheduler = create_scheduler(grid)
    if kind == "asha":
        assert scheduler._max_t == 9  # the grid-level 2 would stop every 9-epoch trial at epoch 2 (KILLED)
    if kind == "fold_asha":
        assert scheduler.board.rungs == [1, 3]


def test_asha_lets_a_long_trial_pass_the_grid_level_epochs(minimal_grid):
    minimal_grid["train"]["epochs"] = 2
    minimal_grid["search"] = {"train.epochs": {"grid": [2, 4]}}
    minimal_grid["scheduler"] = {"kind": "asha", "grace_period": 1, "reduction_factor": 3}
    scheduler = create_scheduler(parse_grid(minimal_grid))
    scheduler.set_search_properties("val_acc", "max")
    trial = FakeTrial("long", 0, folds=3, epochs=4)
    scheduler.on_trial_add(None, trial)
    for epoch in (1, 2, 3):
        result = EpochReport(epoch=epoch, val_acc=0.5).as_result()
        assert scheduler.on_trial_result(None, trial, result) == TrialScheduler.CONTINUE


def test_a_fold_two_epochs_ahead_of_a_running_sibling_waits_at_the_rung_so_the_folds_end_alike():
    """Slots for every fold: one epoch of lead trains on; a sibling that started late is waited for, not outrun."""
    runner = FakeRunner(fold_asha(), [FakeTrial("a", f, folds=2, epochs=4) for f in range(2)])
    f0, f1 = runner.start(), runner.start()
    assert runner.report(f0, 1, 0.5) == TrialScheduler.CONTINUE  # f1 is running and one epoch short of rung 1
    assert runner.report(f1, 1, 0.5) == TrialScheduler.CONTINUE  # rung 1 complete: passed
    assert runner.report(f0, 2, 0.5) == TrialScheduler.CONTINUE
    assert runner.report(f0, 3, 0.5) == TrialScheduler.PAUSE  # f1 is two epochs short of rung 3: f0 would outrun it
    assert runner.scheduler.choose_trial_to_run(runner) is None  # until the config passes rung 3
    assert runner.report(f1, 2, 0.5) == TrialScheduler.CONTINUE
    assert runner.report(f1, 3, 0.5) == TrialScheduler.CONTINUE
    assert runner.scheduler.choose_trial_to_run(runner) is f0
