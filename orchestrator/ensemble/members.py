"""Ensemble members: a grid's finished trials, read back from MLflow and grouped by config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.layout import RunFiles
from orchestrator.tracking.mlflow_store import Tracker


@dataclass
class Member:
    """One config: its folds' OOF rows concatenated, its folds' test probabilities averaged."""

    config_id: str
    model: str
    oof: pd.DataFrame  # row_id, fold, target, prob_*; sorted by row_id
    test: pd.DataFrame | None  # row_id, image_path, prob_*; fold mean
    run_ids: list[str]

    @property
    def test_probs(self) -> np.ndarray:
        return self.test.filter(like="prob_").to_numpy(np.float64)


def latest_trial_runs(tracker: Tracker) -> list:
    """The newest run with predictions per trial identity (reruns never double count)."""
    newest: dict[str, object] = {}
    for run in tracker.runs("trial", "tags.predictions = 'true'"):
        newest.setdefault(run.data.tags["trial_key"], run)
    return list(newest.values())


def load_members(tracker: Tracker, folds: list[int]) -> tuple[list[Member], list[str]]:
    """Members whose every fold in `folds` has predictions; also the config ids left out, and why."""
    by_config: dict[str, list] = {}
    for run in latest_trial_runs(tracker):
        by_config.setdefault(run.data.tags["config_id"], []).append(run)
    members, skipped = [], []
    for config_id, runs in sorted(by_config.items()):
        have = sorted(int(r.data.tags["fold"]) for r in runs)
        if not set(folds) <= set(have):
            skipped.append(f"{config_id}: predictions for folds {have}, needs {folds}")
            continue
        runs = [r for r in runs if int(r.data.tags["fold"]) in folds]
        oof = pd.concat([tracker.load_frame(r.info.run_id, RunFiles.OOF) for r in runs]).sort_values("row_id")
        tests = [tracker.load_frame(r.info.run_id, RunFiles.TEST) for r in runs if _has(tracker, r, RunFiles.TEST)]
        members.append(Member(config_id, runs[0].data.tags["model"], oof.reset_index(drop=True),
                              _mean_test(tests) if len(tests) == len(runs) else None, [r.info.run_id for r in runs]))
    return members, skipped


def _has(tracker: Tracker, run, name: str) -> bool:
    return any(a.path == name for a in tracker.client.list_artifacts(run.info.run_id))


def _mean_test(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f.sort_values("row_id").reset_index(drop=True) for f in frames]
    mean = sum(f.filter(like="prob_").to_numpy(np.float64) for f in frames) / len(frames)
    out = frames[0][["row_id", "image_path"]].copy()
    return pd.concat([out, pd.DataFrame(mean, columns=frames[0].filter(like="prob_").columns)], axis=1)
