"""Refit: the trial a config's refit runs, its epoch count, and how its test predictions join its member's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import REFIT, TrialTables, parse_grid
from orchestrator.driver.refit import best_epoch, refit_grid, refit_trial
from orchestrator.ensemble.members import Member, agreement, use_refits
from orchestrator.search.plan import PlannedTrial, plan_trials


def fold_trial(minimal_grid) -> PlannedTrial:
    minimal_grid["scheduler"] = {"kind": "fold_asha"}
    grid = parse_grid(minimal_grid)
    tables = TrialTables(folds_path="f.parquet", test_path=None, num_classes=3, fingerprint="x")
    return plan_trials(grid, tables)[0]


def test_a_refit_is_its_config_on_every_row_for_the_epochs_given_run_to_its_end(minimal_grid):
    fold = fold_trial(minimal_grid)
    refit = refit_trial(fold, epochs=2)
    cfg = refit.config
    assert cfg.refit and cfg.fold == REFIT and cfg.trial_key == f"{fold.config.config_id}-refit"
    assert cfg.config_id == fold.config.config_id and cfg.train.epochs == 2 and cfg.scheduler.kind == "fifo"
    assert cfg.model == fold.config.model and cfg.train.optimizer == fold.config.train.optimizer
    assert refit.searched == fold.searched
    assert refit_grid(parse_grid(minimal_grid)).scheduler.kind == "fifo"


@pytest.mark.parametrize(("history", "mode", "best"), [({1: 0.5, 2: 0.7, 3: 0.7}, "max", 2), ({1: 0.9, 2: 0.4, 3: 0.6}, "min", 2),
                                                      ({}, "max", 1)])
def test_the_best_epoch_is_the_first_with_the_best_value(history, mode, best):
    assert best_epoch(history, mode) == best


def member(fold_tests: list[np.ndarray], refit: np.ndarray | None) -> Member:
    mean = sum(fold_tests) / len(fold_tests)
    test = pd.DataFrame({"row_id": range(len(mean)), "image_path": "x"}).join(
        pd.DataFrame(mean, columns=[f"prob_{c}" for c in range(mean.shape[1])]))
    return Member("c", "m", pd.DataFrame(), test, [f"f{i}" for i in range(len(fold_tests))], fold_tests,
                  None if refit is None else "r", refit)


def one_hot(classes: list[int], k: int = 3) -> np.ndarray:
    return np.eye(k)[classes] * 0.9 + 0.1 / k


def test_a_refit_model_that_agrees_like_a_fold_model_gets_its_share_and_is_served_with_it():
    folds = [one_hot([0, 1, 2, 0]), one_hot([0, 1, 2, 1]), one_hot([0, 1, 2, 0])]
    m = member(folds, one_hot([0, 1, 2, 0]))
    lines = use_refits([m], 0.5)
    assert m.refit_share == 0.5 and "takes 0.5 of" in lines[0]
    np.testing.assert_allclose(m.test_probs, 0.5 * sum(folds) / 3 + 0.5 * one_hot([0, 1, 2, 0]))
    assert m.models() == [("f0", 1 / 6), ("f1", 1 / 6), ("f2", 1 / 6), ("r", 0.5)]
    use_refits([m], 1.0)
    assert m.models() == [("r", 1.0)]


def test_a_refit_model_that_disagrees_with_its_folds_more_than_any_fold_does_is_not_used():
    folds = [one_hot([0, 1, 2, 0]), one_hot([0, 1, 2, 1]), one_hot([0, 1, 2, 0])]
    m = member(folds, one_hot([1, 2, 0, 1]))  # a diverged refit: wrong everywhere the folds agree
    own, least = agreement(m.refit_test, folds)
    assert own == 0.0 and least == 0.75
    lines = use_refits([m], 0.5)
    assert m.refit_share == 0 and "not used" in lines[0]
    np.testing.assert_allclose(m.test_probs, sum(folds) / 3)
    assert [run for run, _ in m.models()] == ["f0", "f1", "f2"]


def test_members_without_a_refit_are_left_as_they_are():
    m = member([one_hot([0, 1])], None)
    assert use_refits([m], 0.5) == [] and m.models() == [("f0", 1.0)]


def test_a_refit_trains_the_budget_unless_a_fold_stopped_early_then_the_folds_mean_best_epoch(minimal_grid, monkeypatch):
    from orchestrator.driver import refit
    from orchestrator.driver.trials import TrialRecord

    minimal_grid["train"]["epochs"] = 6
    fold = fold_trial(minimal_grid)
    histories = {"a": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.65}, "b": {1: 0.5, 2: 0.8, 3: 0.7}}  # best epochs 3 and 2
    monkeypatch.setattr(refit, "metric_history", lambda tracker, run_id, metric: histories[run_id])
    ran_out = [TrialRecord(fold, epochs=6), TrialRecord(fold, epochs=6)]
    assert refit.refit_epochs(None, ["a", "b"], ran_out, "val_acc", "max") == 6
    stopped = [TrialRecord(fold, epochs=4), TrialRecord(fold, epochs=6)]
    assert refit.refit_epochs(None, ["a", "b"], stopped, "val_acc", "max") == 3  # (3 + 2) / 2, half rounds up


def test_a_refit_a_row_or_two_off_its_folds_is_sampling_noise_and_is_used():
    classes = [i % 3 for i in range(360)]
    folds = [one_hot(classes), one_hot(classes)]  # the fold models agree on every test row
    one_off = member(folds, one_hot([(c + 1) % 3 if i == 0 else c for i, c in enumerate(classes)]))
    five_off = member(folds, one_hot([(c + 1) % 3 if i < 5 else c for i, c in enumerate(classes)]))
    use_refits([one_off, five_off], 0.5)
    assert one_off.refit_share == 0.5 and five_off.refit_share == 0.0  # 2 standard errors of 360 rows: 0.56%


@pytest.mark.parametrize(("earlier_epochs", "stale"), [(3, False), (2, True)])
def test_an_ended_refit_is_reused_unless_its_folds_now_find_other_epochs_best(minimal_grid, monkeypatch, earlier_epochs,
                                                                               stale):
    from orchestrator.driver import refit, resume
    from orchestrator.protocol import TrialStatus
    from orchestrator.tracking.history import PriorTrial

    planned = refit_trial(fold_trial(minimal_grid), epochs=3)
    earlier = PriorTrial("run-1", TrialStatus.FINISHED, earlier_epochs, None, True)
    monkeypatch.setattr(resume, "prior_trials", lambda tracker, metric: {planned.key: earlier})
    work, found = refit.sort_out_refits(parse_grid(minimal_grid), [planned], None, resume=False)
    assert (found == [planned]) is stale and (work.to_run == [planned]) is stale and (work.reused == [planned]) is not stale
