"""Where a grid's time went: slot seconds split by the driver's clock."""

from __future__ import annotations

import pytest

from orchestrator.driver.time_account import TimeAccount
from orchestrator.tracking.plots import timeline_figure


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def at(self, t: float) -> Clock:
        self.now = t
        return self


def test_two_slots_split_into_start_up_epochs_gaps_shutdown_predictions_and_idle():
    clock = Clock()
    account = TimeAccount(clock)
    clock.at(1)
    account.started("a")
    clock.at(9)
    account.reported("a", 4.5, 0.5)  # epoch 1 took 4.5 s, its checkpoint 0.5 s: 3 s of start-up before it
    clock.at(15)
    account.reported("a", 4.5, 0.25, 1.0)  # 0.25 s for the checkpoint, its own predictions 1 s, 0.25 s between
    clock.at(16)
    account.left("a")  # 1 s shutdown
    clock.at(20)
    account.prediction_ran("a", 4.0)  # its task waited for a worker, then ran 4 s
    account.prediction_ran("b", 0.0)  # frames the trial made itself: no task
    clock.at(2)
    account.started("b")
    clock.at(4)
    account.left("b")  # stopped before its first report: all start-up
    with account.in_driver():
        clock.at(4.5)
    clock.at(20)
    summary = account.summary(slots=2)
    assert summary.wall == 20 and summary.slot_time == 40
    assert summary.seconds == pytest.approx({"epochs": 9, "start-up": 5, "checkpoints": 0.75, "between epochs": 0.25,
                                             "shutdown": 1, "predictions": 5, "idle": 19})
    assert summary.useful_share == pytest.approx(9 / 40) and summary.driver == pytest.approx(0.5)
    assert summary.metrics()["time_between_epochs_s"] == pytest.approx(0.25)
    assert summary.metrics()["time_checkpoints_s"] == pytest.approx(0.75)
    assert "2 trial slot(s) x 20 s = 40 slot-s" in summary.render() and "22.5%" in summary.render()
    axis = timeline_figure(account).axes[0]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["a", "b"]
    assert len(axis.patches) == 2 + 2 + 2 + 1 + 1  # two start-ups, two epochs, their checkpoints, a trial's own prediction, a task's


def test_a_pause_ends_a_stretch_and_the_unpaused_trial_pays_start_up_again():
    clock = Clock()
    account = TimeAccount(clock)
    account.started("a")
    clock.at(4)
    account.reported("a", 2.0)
    clock.at(5)
    account.left("a")  # fold_asha paused it
    clock.at(7)
    account.started("a")
    clock.at(12)
    account.reported("a", 2.0)
    clock.at(12)
    account.left("a")
    assert account.summary(slots=1).seconds["start-up"] == pytest.approx(2 + 3)


def test_a_trial_still_running_counts_up_to_now():
    clock = Clock()
    account = TimeAccount(clock)
    account.started("a")
    clock.at(3)
    account.reported("a", 1.0)
    clock.at(10)
    assert account.summary(slots=1).seconds["shutdown"] == pytest.approx(7)


def test_the_driver_s_work_between_the_folds_and_the_refits_runs_is_not_slot_time():
    clock = Clock()
    account = TimeAccount(clock)
    account.tune_started()
    clock.at(1)
    account.started("a")
    clock.at(11)
    account.reported("a", 10.0)
    account.left("a")
    account.tune_ended()
    clock.at(71)  # a minute of insight and choosing refits
    account.tune_started()
    account.started("a-refit")
    clock.at(81)
    account.reported("a-refit", 10.0)
    account.left("a-refit")
    summary = account.summary(slots=1)
    assert summary.between_runs == 60 and summary.wall == 21 and summary.seconds["epochs"] == 20
    assert summary.seconds["idle"] == pytest.approx(1.0) and "between runs" in summary.render()
