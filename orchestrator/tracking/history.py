"""What earlier invocations of a grid left in MLflow: the basis of reuse and --resume.

A trial identity (config_id + fold) has one child run. When a later invocation
plans the same identity, the run decides what happens to it:
  ended (FINISHED, or KILLED by the scheduler): reused, never trained again;
  anything else (RUNNING under a driver that died, INTERRUPTED, FAILED):
  `--resume` continues that run from the trial's last checkpoint; a plain run
  starts the trial afresh in a new run and marks the old one ABANDONED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.protocol import TrialStatus
from orchestrator.tracking.cost import Cost
from orchestrator.tracking.mlflow_store import Tracker


@dataclass(frozen=True)
class PriorTrial:
    run_id: str
    status: TrialStatus  # the run's `status` tag
    epochs: int
    best: float | None
    predictions: bool
    nodes: tuple[str, ...] = ()  # the run's `nodes` tag: where it ran so far
    cost: Cost = field(default_factory=Cost)  # the run's `cost_*` metrics: what it cost so far

    @property
    def ended(self) -> bool:
        return self.status.ended


def prior_trials(tracker: Tracker, metric: str) -> dict[str, PriorTrial]:
    """The newest child run per trial identity in the grid's experiment (abandoned runs skipped)."""
    found: dict[str, PriorTrial] = {}
    for run in tracker.runs("trial", f"tags.status != '{TrialStatus.ABANDONED}'"):
        tags = run.data.tags
        if tags.get("trial_key") in found or "trial_key" not in tags:
            continue
        found[tags["trial_key"]] = PriorTrial(run.info.run_id, TrialStatus(tags.get("status", TrialStatus.RUNNING)), int(tags.get("epochs", 0) or 0),
                                              run.data.metrics.get(f"best_{metric}"), tags.get("predictions") == "true",
                                              tuple(filter(None, tags.get("nodes", "").split(","))),
                                              Cost.from_metrics(run.data.metrics))
    return found


def metric_history(tracker: Tracker, run_id: str, metric: str) -> dict[int, float]:
    """{epoch: value} of one metric of a run (steps are epochs)."""
    return {m.step: m.value for m in tracker.client.get_metric_history(run_id, metric)}


def latest_grid_run(tracker: Tracker) -> Any | None:
    runs = tracker.runs("grid")
    return runs[0] if runs else None


def teacher_predictions(tracker: Tracker, ref: str) -> tuple[str, Any]:
    """A pseudo round's teacher: the ensemble run `ref` (a run id, or `latest`) and its blended test probabilities."""
    from orchestrator.errors import InputError
    from orchestrator.layout import RunFiles

    if ref == "latest":
        found = tracker.runs("ensemble")
        if not found:
            raise InputError(f"pseudo.teacher: latest: experiment {tracker.experiment_name!r} has no ensemble run yet; "
                             f"run `python -m orchestrator.ensemble` on the grid first")
        run = found[0]
    else:
        run = next((r for r in tracker.runs("ensemble") if r.info.run_id == ref), None)
        if run is None:
            raise InputError(f"pseudo.teacher: {ref!r} is not an ensemble run of experiment {tracker.experiment_name!r}; "
                             f"give the run id the ensemble job printed, or latest")
    try:
        return run.info.run_id, tracker.load_frame(run.info.run_id, RunFiles.ENSEMBLE_TEST)
    except Exception:  # noqa: BLE001 - MLflow raises its own kinds for a missing artifact
        raise InputError(f"pseudo.teacher: ensemble run {run.info.run_id} has no {RunFiles.ENSEMBLE_TEST} (made by an "
                         f"older version, or the data has no test set); run the ensemble again") from None
