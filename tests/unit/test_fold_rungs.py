"""Fold-aware successive halving: configs pass or stop as a whole, on fold means."""

from orchestrator.config import TuneSchedulerConfig
from orchestrator.search.fold_rungs import FoldRungs, Verdict


def board(configs: dict[str, list[int]], rungs=(1, 3), rf=3.0, mode="max") -> FoldRungs:
    b = FoldRungs(list(rungs), rf, mode)
    for config_id, folds in configs.items():
        for fold in folds:
            b.expect(config_id, fold)
    return b


def rungs(grace_period, reduction_factor, max_epochs):
    return TuneSchedulerConfig(grace_period=grace_period, reduction_factor=reduction_factor).rung_epochs(max_epochs)


def test_rung_epochs_stop_below_the_last_epoch():
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(1, 2, 8) == [1, 2, 4]
    assert rungs(2, 3, 20) == [2, 6, 18]
    assert rungs(4, 3, 4) == []
    assert rungs(1, 1.5, 4) == [1, 2, 3]  # rounding never repeats a rung


def test_a_fold_waits_until_its_siblings_reach_the_rung_then_all_share_the_verdict():
    b = board({"a": [0, 1, 2], "b": [0, 1, 2]})
    assert [b.record("a", f, 1, 0.5) for f in (0, 1)] == [Verdict.WAIT, Verdict.WAIT]
    assert b.record("a", 2, 1, 0.5) is Verdict.CONTINUE  # first config at the rung: nothing to beat
    assert b.has_passed("a", 1)
    assert b.record("b", 0, 1, 0.9) is Verdict.WAIT
    assert b.record("b", 1, 1, 0.1) is Verdict.WAIT
    assert b.record("b", 2, 1, 0.1) is Verdict.STOP  # mean 0.37 < cutoff 0.5
    assert b.is_stopped("b") and b.record("b", 0, 2, 0.9) is Verdict.STOP  # its other folds stop at their next report


def test_judged_on_the_mean_not_on_one_lucky_or_unlucky_fold():
    b = board({"good": [0, 1], "noisy": [0, 1]})
    b.record("good", 0, 1, 0.60)
    b.record("good", 1, 1, 0.60)
    b.record("noisy", 0, 1, 0.40)  # plain ASHA would stop this trial here: 0.40 < 0.60
    assert b.record("noisy", 1, 1, 0.90) is Verdict.CONTINUE  # mean 0.65 beats 0.60


def test_min_mode_and_nan_mean_stops():
    b = board({"a": [0], "b": [0], "c": [0]}, mode="min")
    assert b.record("a", 0, 1, 1.0) is Verdict.CONTINUE
    assert b.record("b", 0, 1, 2.0) is Verdict.STOP  # a larger loss is worse
    assert b.record("c", 0, 1, float("nan")) is Verdict.STOP


def test_non_rung_epochs_continue_and_later_rungs_are_judged_again():
    b = board({"a": [0], "b": [0], "c": [0]})
    for config_id, score in (("a", 0.5), ("b", 0.6), ("c", 0.7)):
        assert b.record(config_id, 0, 1, score) is Verdict.CONTINUE  # each beats the earlier ones
    assert b.record("a", 0, 2, 0.0) is Verdict.CONTINUE  # epoch 2 is no rung
    assert b.record("c", 0, 3, 0.8) is Verdict.CONTINUE
    assert b.record("a", 0, 3, 0.5) is Verdict.STOP


def test_a_fold_that_leaves_early_is_not_waited_for():
    b = board({"a": [0, 1, 2]})
    assert b.record("a", 0, 1, 0.5) is Verdict.WAIT
    assert b.record("a", 1, 1, 0.7) is Verdict.WAIT
    assert b.drop("a", 2, last_epoch=0) == [1]  # fold 2 failed before epoch 1: rung 1 is complete now
    assert b.has_passed("a", 1)


def test_seeds_from_earlier_runs_count_as_history():
    b = FoldRungs([1, 3], 3.0, "max")
    for fold in (0, 1):  # an ended config from an earlier run, both folds past rung 1
        b.seed("old", fold, {1: 0.8, 2: 0.85, 3: 0.9})
    b.settle_seeds()
    assert b.has_passed("old", 1) and b.means[1] == [0.8]
    b.expect("new", 0)
    b.expect("new", 1)
    b.record("new", 0, 1, 0.3)
    assert b.record("new", 1, 1, 0.3) is Verdict.STOP  # the new model is judged against the old one


def test_resumed_config_keeps_its_seeded_folds():
    b = FoldRungs([1, 3], 3.0, "max")
    b.seed("a", 0, {1: 0.5})  # fold 0 reached rung 1 before the driver died; fold 1 had not
    b.expect("a", 1)
    b.settle_seeds()
    assert b.record("a", 1, 1, 0.7) is Verdict.CONTINUE
    assert b.means[1] == [0.6]


def test_a_rung_at_or_past_a_configs_own_last_epoch_is_not_a_rung_for_it():
    """train.epochs as a search axis: a 1-epoch config never waits at rung 1, a 3-epoch one does."""
    b = FoldRungs([1, 3], 3.0, "max")
    for fold in (0, 1):
        b.expect("short", fold, budget=1)
        b.expect("long", fold, budget=9)
    assert b.record("short", 0, 1, 0.5) is Verdict.CONTINUE  # its last epoch: it ends by itself, nothing to save
    assert b.record("long", 0, 1, 0.5) is Verdict.WAIT


def test_a_reused_fold_that_ended_early_is_not_expected_again_when_the_grid_grows():
    b = FoldRungs([1, 3], 3.0, "max")
    b.seed("a", 0, {1: 0.5})
    b.drop("a", 0, 1)  # reused: it ended after epoch 1 in an earlier run
    b.settle_seeds()
    for fold in (0, 1):  # the grown grid's first trial of config a expects every fold
        b.expect("a", fold)
    assert b.record("a", 1, 3, 0.5) is Verdict.CONTINUE  # rung 3 is complete without fold 0, which will never report it
