"""What trials cost (resources held x time) and the per-config leaderboard that sums it."""

from __future__ import annotations

import math

import pytest

from orchestrator.board import markdown, render
from orchestrator.config import ResourcesConfig, TrialTables, parse_grid
from orchestrator.driver.leaderboard import leaderboard
from orchestrator.driver.time_account import TimeAccount
from orchestrator.driver.trials import TrialBook
from orchestrator.protocol import TrialStatus
from orchestrator.search.plan import plan_trials
from orchestrator.tracking.cost import Cost, total, trial_cost

TABLES = TrialTables(folds_path="f.parquet", test_path=None, num_classes=3)


def test_a_trial_costs_what_it_holds_times_how_long():
    local = ResourcesConfig(cpus_per_worker=2, gpus_per_worker=0.5, local_mode="on")
    cost = trial_cost(3600.0, 1800.0, local)  # an hour in its slot, half an hour of prediction task
    assert cost == Cost(wall_s=5400.0, cpu_hours=2 + 1, gpu_hours=0.5 + 0.25)
    group = ResourcesConfig(cpus_per_worker=2, gpus_per_worker=1, workers_per_trial=4, local_mode="off")
    assert trial_cost(3600.0, 0.0, group) == Cost(3600.0, 8.0, 4.0)  # all its workers; the trainable holds none
    assert Cost.from_metrics(cost.metrics()) == cost and Cost.from_metrics({}) == Cost()


def test_a_trials_seconds_are_its_stretches_and_its_prediction_tasks():
    now = [0.0]
    account = TimeAccount(clock=lambda: now[0])
    account.started("a")
    now[0] = 10.0
    account.left("a")  # paused (fold_asha)
    now[0] = 15.0
    account.started("a")  # unpaused
    now[0] = 20.0
    account.left("a")
    now[0] = 27.0
    account.prediction_ran("a", 4.0)
    assert account.seconds_of("a") == (15.0, 4.0)
    assert account.seconds_of("b") == (0.0, 0.0)


@pytest.fixture
def book(minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}}
    minimal_grid["data"]["folds"]["use"] = [0, 1]
    plan = plan_trials(parse_grid(minimal_grid), TABLES)
    book = TrialBook(plan)
    scores = {(0.1, 0): 0.5, (0.1, 1): 0.7, (0.01, 0): 0.8, (0.01, 1): None}  # the last one failed
    for i, p in enumerate(plan):
        record = book.records[p.key]
        record.best = scores[(p.searched["train.optimizer.lr"], p.config.fold)]
        record.status = TrialStatus.FAILED if record.best is None else TrialStatus.FINISHED
        record.epochs = 0 if record.best is None else 3
        record.cost = Cost(100.0 * (i + 1), 0.01 * (i + 1), 0.0)
    return book


def test_the_leaderboard_ranks_configs_by_their_mean_fold_score_and_sums_their_cost(book):
    board = leaderboard(book.records.values(), mode="max")
    assert list(board["train.optimizer.lr"]) == ["0.01", "0.1"]  # 0.8 (one fold scored) before 0.6
    first, second = board.iloc[0], board.iloc[1]
    assert (first["fold_0"], first["mean"], first["epochs"], first["status"]) == (0.8, 0.8, "3/0", "1 finished, 1 failed")
    assert math.isclose(second["mean"], 0.6) and math.isclose(second["std"], 0.1)
    records = total(r.cost for r in book.records.values())
    assert math.isclose(board["cpu_hours"].sum(), records.cpu_hours) and math.isclose(board["wall_s"].sum(), records.wall_s)
    assert list(leaderboard(book.records.values(), mode="min")["train.optimizer.lr"]) == ["0.1", "0.01"]
    text = render(board, "val_acc")
    assert "mean val_acc" in text and "f0" in text and text.count("\n") == 3
    assert markdown(board, "val_acc", top=1).endswith("(1 more configs in `leaderboard.csv`)")


def test_a_nan_fold_score_counts_as_missing_and_no_trials_still_make_a_board(book):
    record = next(r for r in book.records.values() if r.best == 0.5)
    record.best = float("nan")  # a diverged fold
    board = leaderboard(book.records.values(), mode="max")
    assert board.iloc[1]["mean"] == 0.7  # its other fold, not NaN (which would rank it last)
    empty = leaderboard([], mode="max")  # a searcher's run stopped before its first trial
    assert len(empty) == 0 and {"config_id", "mean", "weight"} <= set(empty.columns)
    assert "mean val_acc" in render(empty, "val_acc")
