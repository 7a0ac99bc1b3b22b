"""Ensemble members: a grid's finished trials, read back from MLflow and grouped by config.

A config's member is its fold models (their OOF rows are what weights are fitted on) and, when the grid refitted
it (`ensemble.refit`), the model trained on every row. The refit model has no OOF rows, so nothing can score it:
it takes `ensemble.refit_share` of its member's test probabilities, a prior, and is checked against its fold
models (`use_refits`): one whose test predictions agree with its folds' less than the least agreeing fold model
agrees with the others, by more than the sampling noise of the test rows (`noise`), is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from orchestrator.layout import RunFiles
from orchestrator.tracking.mlflow_store import Tracker


@dataclass
class Member:
    """One config: its folds' OOF rows concatenated, its folds' test probabilities averaged, and its refit."""

    config_id: str
    model: str
    oof: pd.DataFrame  # row_id, fold, target, prob_*; sorted by row_id
    test: pd.DataFrame | None  # row_id, image_path, prob_*; fold mean
    run_ids: list[str]  # the fold trials' runs
    fold_tests: list[np.ndarray] = field(default_factory=list)  # each fold model's test probabilities (refit: kept)
    refit_id: str | None = None  # the refit trial's run, if the grid refitted this config
    refit_test: np.ndarray | None = None  # its test probabilities, in `test`'s row order
    refit_share: float = 0.0  # what use_refits gave the refit model of the member's test probabilities

    @property
    def test_probs(self) -> np.ndarray:
        """The member's test probabilities: its fold mean, blended with its refit model's by `refit_share`."""
        folds = self.test.filter(like="prob_").to_numpy(np.float64)
        if not self.refit_share:
            return folds
        return (1 - self.refit_share) * folds + self.refit_share * self.refit_test

    def models(self) -> list[tuple[str, float]]:
        """(run id, share of the member's probabilities) of each model the member is served with."""
        folds = 1 - self.refit_share
        out = [(run_id, folds / len(self.run_ids)) for run_id in self.run_ids] if folds > 0 else []
        return out + ([(self.refit_id, self.refit_share)] if self.refit_share else [])


def use_refits(members: list[Member], share: float) -> list[str]:
    """Give each member's refit model `share` of its test probabilities where it passes the check against its fold
    models (module docstring); returns one line per member with a refit: what it got, and why."""
    lines = []
    for member in members:
        if member.refit_id is None:
            continue
        if member.test is None:
            member.refit_share = share  # no test set: the served model's share, unchecked
            lines.append(f"{member.config_id}: its refit model takes {share:g} of its probabilities (no test rows to "
                         f"check it against its fold models)")
            continue
        if member.refit_test is None:
            lines.append(f"{member.config_id}: its refit model is not used (its test predictions are missing, or not "
                         f"of its folds' test rows)")
            continue
        own, least = agreement(member.refit_test, member.fold_tests)
        margin = None if least is None else noise(least, len(member.refit_test))
        member.refit_share = share if least is None or own >= least - margin else 0.0
        verdict = (f"takes {share:g} of its test probabilities, its fold models the rest" if member.refit_share
                   else "is not used")
        against = "" if least is None else f", its least agreeing fold model with the others {least:.1%} +- {margin:.1%}"
        lines.append(f"{member.config_id}: its refit model {verdict} (its test classes agree with its fold models' mean on "
                     f"{own:.1%} of test rows{against})")
    return lines


def noise(share: float, rows: int) -> float:
    """Two standard errors of an agreement `share` measured on `rows` test rows: a refit that agrees with its
    folds a row or two less than a fold model does is sampling noise, not a diverged model."""
    return 2 * math.sqrt(max(share * (1 - share), 1 / rows) / rows)


def agreement(refit: np.ndarray, folds: list[np.ndarray]) -> tuple[float, float | None]:
    """(the share of test rows where the refit model's class is the fold mean's, the least such share of a fold model
    against the mean of the other folds; None with one fold)."""
    mean = sum(folds) / len(folds)
    own = float((refit.argmax(1) == mean.argmax(1)).mean())
    if len(folds) < 2:
        return own, None
    others = [(mean * len(folds) - f) / (len(folds) - 1) for f in folds]
    return own, min(float((f.argmax(1) == o.argmax(1)).mean()) for f, o in zip(folds, others))


def latest_trial_runs(tracker: Tracker) -> list:
    """The newest run with predictions per trial identity (reruns never double count)."""
    newest: dict[str, object] = {}
    for run in tracker.runs("trial", "tags.predictions = 'true'"):
        newest.setdefault(run.data.tags["trial_key"], run)
    return list(newest.values())


def load_members(tracker: Tracker, folds: list[int], tests: bool = True,
                 configs: set[str] | None = None) -> tuple[list[Member], list[str]]:
    """Members whose every fold in `folds` has predictions (with their refits, if any); also the config ids left
    out, and why. `tests=False`: their OOF rows alone (what choosing among them needs), no test probabilities;
    `configs`: only these config ids (None: every config of the experiment)."""
    by_config: dict[str, list] = {}
    refits: dict[str, object] = {}
    for run in latest_trial_runs(tracker):
        if configs is not None and run.data.tags["config_id"] not in configs:
            continue
        if run.data.tags.get("refit") == "true":
            refits[run.data.tags["config_id"]] = run
        else:
            by_config.setdefault(run.data.tags["config_id"], []).append(run)
    members, skipped = [], []
    for config_id, runs in sorted(by_config.items()):
        have = sorted(int(r.data.tags["fold"]) for r in runs)
        if not set(folds) <= set(have):
            skipped.append(f"{config_id}: predictions for folds {have}, needs {folds}")
            continue
        runs = [r for r in runs if int(r.data.tags["fold"]) in folds]
        oof = pd.concat([tracker.load_frame(r.info.run_id, RunFiles.OOF) for r in runs]).sort_values("row_id")
        frames = [_test(tracker, r) for r in runs] if tests else []
        complete = bool(frames) and all(t is not None for t in frames)
        member = Member(config_id, runs[0].data.tags["model"], oof.reset_index(drop=True),
                        _mean_test(frames) if complete else None, [r.info.run_id for r in runs],
                        # each fold's own probabilities only where a refit is checked against them (memory: a
                        # grid's configs x folds x test rows x classes)
                        [_probs(t) for t in frames] if complete and config_id in refits else [])
        if config_id in refits and tests:
            member.refit_id = refits[config_id].info.run_id
            refit_test = _test(tracker, refits[config_id])
            same_rows = refit_test is not None and member.test is not None and \
                refit_test["row_id"].tolist() == member.test["row_id"].tolist()
            member.refit_test = _probs(refit_test) if same_rows else None
        members.append(member)
    return members, skipped


def _test(tracker: Tracker, run) -> pd.DataFrame | None:
    """A run's test probabilities, sorted by row id (None: the source has no test set)."""
    if not _has(tracker, run, RunFiles.TEST):
        return None
    return tracker.load_frame(run.info.run_id, RunFiles.TEST).sort_values("row_id").reset_index(drop=True)


def _probs(frame: pd.DataFrame) -> np.ndarray:
    return frame.filter(like="prob_").to_numpy(np.float64)


def _has(tracker: Tracker, run, name: str) -> bool:
    return any(a.path == name for a in tracker.client.list_artifacts(run.info.run_id))


def _mean_test(frames: list[pd.DataFrame]) -> pd.DataFrame:
    mean = sum(_probs(f) for f in frames) / len(frames)
    out = frames[0][["row_id", "image_path"]].copy()
    return pd.concat([out, pd.DataFrame(mean, columns=frames[0].filter(like="prob_").columns)], axis=1)
