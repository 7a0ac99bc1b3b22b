"""The trial plan: expansion, identity, reproducible draws."""

from __future__ import annotations

from orchestrator.config import TrialTables, parse_grid
from orchestrator.search.plan import config_id, format_plan, plan_trials, trial_skeleton

TABLES = TrialTables(folds_path="f.parquet", test_path=None, num_classes=3)


def test_grid_axes_cross_models_and_folds(minimal_grid):
    minimal_grid["models"] = [{"name": "test_resnet"}, {"name": "test_vit"}]
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}, "train.batch_size": {"grid": [4, 8]}}
    plan = plan_trials(parse_grid(minimal_grid), TABLES)
    assert len(plan) == 2 * 4 * 3
    assert len({p.key for p in plan}) == len(plan)
    assert [p.config.fold for p in plan[:3]] == [0, 1, 2]  # folds of one config adjacent
    first = plan[0].config
    assert first.train.optimizer.lr == 0.1 and first.train.batch_size == 4 and first.model.name == "test_resnet"


def test_random_axes_are_reproducible(minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"loguniform": [1e-4, 1e-1]}}
    minimal_grid["num_samples"] = 4
    lrs = [p.config.train.optimizer.lr for p in plan_trials(parse_grid(minimal_grid), TABLES)]
    again = [p.config.train.optimizer.lr for p in plan_trials(parse_grid(minimal_grid), TABLES)]
    assert lrs == again and len(set(lrs)) == 4 and all(1e-4 <= lr <= 1e-1 for lr in lrs)


def test_identity_ignores_which_folds_run(minimal_grid):
    grid = parse_grid(minimal_grid)
    minimal_grid["data"]["folds"]["use"] = [1]
    assert config_id(trial_skeleton(grid)) == config_id(trial_skeleton(parse_grid(minimal_grid)))
    minimal_grid["train"]["epochs"] = 2
    assert config_id(trial_skeleton(grid)) != config_id(trial_skeleton(parse_grid(minimal_grid)))


def test_dry_run_table_has_a_row_per_trial(minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}}
    text = format_plan(plan_trials(parse_grid(minimal_grid), TABLES))
    assert text.splitlines()[0].split() == ["#", "config_id", "fold", "model", "train.optimizer.lr"]
    assert len(text.splitlines()) == 2 + 6


def test_identity_changes_with_the_data(minimal_grid, tiny_sketch):
    """A fixed label (or any row) changes every config_id, so a rerun retrains instead of reusing stale trials."""
    from orchestrator.data.prepare import data_fingerprint
    from orchestrator.data.sources import SOURCES

    grid = parse_grid(minimal_grid)
    tables = SOURCES["sketch_csv"].load(grid.data)
    before = data_fingerprint(tables)
    assert before == data_fingerprint(SOURCES["sketch_csv"].load(grid.data))  # stable
    tables.train.loc[0, "target"] = 1
    assert data_fingerprint(tables) != before
    ids = {plan_trials(grid, TABLES.model_copy(update={"fingerprint": f}))[0].config.config_id for f in ("a", "b")}
    assert len(ids) == 2
