"""Refit (`ensemble.refit`): the chosen configs trained once more on every training row, after their folds.

Each fold model sees (k-1)/k of the rows and none sees them all; teams submit models retrained on every row.
Which configs: the ensemble's own choice on the folds' OOF predictions (ensemble/fit.py), its best member
(`best`) or every member it gives weight (`members`). How long: the epochs their folds found best, the mean
best epoch where a fold stopped before its budget (early stopping, or the scheduler), else the budget itself
(a fold that ran its whole schedule was best at its end, or close: its learning rate was annealed for it).
A refit is an ordinary trial (fold REFIT: no validation rows, so no early stopping and no OOF) with its
config's recipe, under FIFO; the ensemble job blends its test predictions with its fold models' (members.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.config import REFIT, GridConfig, TrialConfig
from orchestrator.driver.resume import Work, sort_out
from orchestrator.driver.trials import TrialRecord
from orchestrator.ensemble.fit import fit_members
from orchestrator.ensemble.members import load_members
from orchestrator.search.plan import PlannedTrial
from orchestrator.tracking.history import metric_history
from orchestrator.tracking.mlflow_store import Tracker


def refit_grid(grid: GridConfig) -> GridConfig:
    """The grid as the refit phase runs it: every trial to its end (FIFO), nothing proposed (searcher grid)."""
    return grid.model_copy(update={"scheduler": grid.scheduler.model_copy(update={"kind": "fifo"}), "searcher": "grid"})


def plan_refits(grid: GridConfig, tracker: Tracker, records: Iterable[TrialRecord]) -> list[PlannedTrial]:
    """One refit trial per config `ensemble.refit` chooses among the configs whose every fold has predictions
    in MLflow (none with `refit: none`, or before any config is complete)."""
    if grid.ensemble.refit == "none":
        return []
    folds: dict[str, list[TrialRecord]] = {}
    for record in records:
        if not record.planned.config.refit:
            folds.setdefault(record.planned.config.config_id, []).append(record)
    # this grid's configs only: the experiment also holds other rounds' (a pseudo round's teacher's) and configs
    # a grid.yaml no longer plans, whose rows and recipe are not this run's
    members, _ = load_members(tracker, grid.data.folds.folds_to_train(), tests=False, configs=set(folds))
    if not members:
        return []
    result = fit_members(members, grid.scheduler.metric, grid.ensemble)
    # most weight first, the best by OOF first among equals (held_up may leave the best by OOF no weight)
    order = sorted((i for i, w in enumerate(result.weights) if w > 0), key=lambda i: -result.weights[i])
    planned = []
    for member in [result.chosen[i] for i in (order[:1] if grid.ensemble.refit == "best" else order)]:
        group = folds[member.config_id]
        epochs = refit_epochs(tracker, member.run_ids, group, grid.scheduler.metric, grid.scheduler.mode)
        planned.append(refit_trial(group[0].planned, epochs))
    return planned


def sort_out_refits(grid: GridConfig, planned: list[PlannedTrial], tracker: Tracker, resume: bool) -> tuple[Work, list]:
    """`resume.sort_out` for refits, and the stale ones: ended refits trained for other epochs than their folds now
    find best (the folds changed: a grown grid), moved to the trials to run (the caller retires their old runs)."""
    work = sort_out(refit_grid(grid), planned, tracker, resume)
    stale = [p for p in work.reused if work.prior[p.key].epochs != p.config.train.epochs]
    work.reused = [p for p in work.reused if p not in stale]
    work.to_run += stale
    return work, stale


def refit_epochs(tracker: Tracker, run_ids: list[str], folds: list[TrialRecord], metric: str, mode: str) -> int:
    """The budget when every fold ran it out, else the folds' mean best epoch (by `metric`'s history), rounded."""
    budget = folds[0].planned.config.train.epochs
    if all(r.epochs >= budget for r in folds):
        return budget
    bests = [best_epoch(metric_history(tracker, run_id, metric), mode) for run_id in run_ids]
    return max(1, math.floor(sum(bests) / len(bests) + 0.5))


def best_epoch(history: dict[int, float], mode: str) -> int:
    """The first epoch with the best value (`mode` "max" | "min"); 1 for an empty history."""
    if not history:
        return 1
    sign = 1 if mode == "max" else -1
    return max(sorted(history), key=lambda epoch: sign * history[epoch])


def refit_trial(fold: PlannedTrial, epochs: int) -> PlannedTrial:
    """The fold trial's config trained on every row for `epochs` (its schedule fitted to them), run to its end."""
    cfg = fold.config
    raw = cfg.model_dump(mode="json") | {"fold": REFIT, "attempt": 0}
    raw["train"]["epochs"] = epochs
    raw["scheduler"]["kind"] = "fifo"
    return PlannedTrial(TrialConfig.model_validate(raw), fold.searched)
