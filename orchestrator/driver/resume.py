"""Which planned trials run, continue or are reused, and under which parent run.

A trial's identity is its config_id (a hash of its resolved config and data)
plus its fold, so a grid that is run again, grown by a model, a fold or a search
value, or resumed after a crash, maps onto the trials MLflow already holds (see
history.py for the rules). The driver asks this module before the search starts
and hands the search what it needs (the trials to run, fold_asha's seeds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from orchestrator.config import GridConfig
from orchestrator.errors import InputError
from orchestrator.protocol import EVERY_EPOCH, TrialStatus
from orchestrator.search.fold_rungs import FoldSeed
from orchestrator.search.plan import PlannedTrial
from orchestrator.storage import remove_tree
from orchestrator.tracking.history import PriorTrial, metric_history, prior_trials
from orchestrator.tracking.mlflow_store import Tracker


@dataclass
class Work:
    to_run: list[PlannedTrial]
    reused: list[PlannedTrial]  # ended in an earlier run
    continued: dict[str, PriorTrial]  # trial key -> the unfinished run it continues (--resume), epochs as logged
    prior: dict[str, PriorTrial]  # every earlier run of a planned identity

    def seeds(self, tracker: Tracker, grid: GridConfig) -> dict[tuple[str, int], FoldSeed]:
        """Earlier per-epoch scores of planned folds (and whether that fold ended), for fold_asha's rungs."""
        if grid.scheduler.kind != "fold_asha":
            return {}
        keyed = {p.key: p.config for p in self.to_run + self.reused}
        return {(keyed[key].config_id, keyed[key].fold): FoldSeed(metric_history(tracker, old.run_id, grid.scheduler.metric), old.ended)
                for key, old in self.prior.items() if key in keyed and (old.ended or key in self.continued)}


def sort_out(grid: GridConfig, plan: list[PlannedTrial], tracker: Tracker, resume: bool) -> Work:
    """Split the plan by what MLflow holds (reads only; `start_afresh` acts on the split)."""
    if resume and grid.searcher == "optuna":
        raise InputError("--resume: with searcher: optuna, TPE proposes new configs on every run, so there is "
                         "nothing to continue; run the grid again without --resume")
    prior = {k: v for k, v in prior_trials(tracker, grid.scheduler.metric).items() if k in {p.key for p in plan}}
    reused = [p for p in plan if p.key in prior and prior[p.key].ended]
    to_run = [p for p in plan if p not in reused]
    continued = {p.key: _as_logged(tracker, prior[p.key]) for p in to_run if resume and p.key in prior}
    return Work(to_run, reused, continued, prior)


def start_afresh(work: Work, tracker: Tracker, resume: bool) -> None:
    """Without --resume: earlier unfinished runs of trials to run are ABANDONED, and every trial to run loses its
    stale checkpoints (a fresh start must not resume them)."""
    if resume:
        return
    abandoned = [p for p in work.to_run if p.key in work.prior]
    retire(abandoned, work, tracker)
    unfinished = [p for p in abandoned if not work.prior[p.key].ended]  # (ended ones here: stale refits, said apart)
    if unfinished:
        print(f"{len(unfinished)} trial(s) of an earlier run did not end; they start afresh "
              f"(`--resume` would continue them from their last checkpoint)", flush=True)
    for p in work.to_run:
        remove_tree(p.config.layout.trial_dir(p.key))


def retire(trials: list[PlannedTrial], work: Work, tracker: Tracker) -> None:
    """These trials' earlier runs become ABANDONED (a rerun no longer finds them) and their folders go."""
    for p in trials:
        tracker.end_run(work.prior[p.key].run_id, TrialStatus.ABANDONED.mlflow_status, {"status": str(TrialStatus.ABANDONED)})
        remove_tree(p.config.layout.trial_dir(p.key))


def _as_logged(tracker: Tracker, old: PriorTrial) -> PriorTrial:
    """An unfinished run's epochs as its history of EVERY_EPOCH has them (its `epochs` tag is written only at its
    end)."""
    return dataclasses.replace(old, epochs=max(metric_history(tracker, old.run_id, EVERY_EPOCH), default=0))
