"""A multilabel ensemble's decision: which tags to call, by thresholds tuned on the OOF probabilities.

Three candidates: every tag at 0.5, one global threshold, and a threshold per tag (coordinate ascent from the
global one). Each is fitted on all OOF folds but one and judged on the held fold, as the weights are
(ensemble/weights.py); the candidate with the best cross-validated score is kept, so per-tag thresholds that
only fit their rows' noise give way to the global one, and a global one that does not hold up to 0.5. The
kept kind is then fitted on every OOF row. Rows left with no tag get their most probable one (`at_least_one`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrator.blend import decide

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the thresholds tried
KINDS = ("fixed", "global", "per_tag")  # the order that wins a tie: the simpler first

Score = Callable[[np.ndarray, np.ndarray], float]  # (tags called as 0/1, multi-hot truth) -> higher is better


def fit(kind: str, probs: np.ndarray, hot: np.ndarray, score: Score, at_least_one: bool, sweeps: int = 2) -> np.ndarray:
    """Thresholds (one per tag) of `kind` that maximise `score` on these rows."""
    tags = probs.shape[1]
    if kind == "fixed":
        return np.full(tags, 0.5)

    def value(thresholds: np.ndarray) -> float:
        return score(decide(probs, thresholds, at_least_one).astype(np.float64), hot)

    best = max(GRID, key=lambda t: (value(np.full(tags, t)), -abs(t - 0.5)))  # ties: the one nearest 0.5
    thresholds = np.full(tags, float(best))
    if kind == "global":
        return thresholds
    for _ in range(sweeps):
        for tag in range(tags):
            def trial(t: float, tag: int = tag) -> tuple[float, float]:
                thresholds[tag] = t
                return value(thresholds), -abs(t - best)

            kept = thresholds[tag]
            thresholds[tag] = max(GRID, key=trial)
            if value(thresholds) < value(_with(thresholds, tag, kept)):  # never worse than where it started
                thresholds[tag] = kept
    return thresholds


def _with(thresholds: np.ndarray, tag: int, value: float) -> np.ndarray:
    out = thresholds.copy()
    out[tag] = value
    return out


@dataclass(frozen=True)
class Thresholds:
    kind: str  # which candidate held up: fixed | global | per_tag
    values: np.ndarray  # per tag, fitted on every OOF row
    at_least_one: bool
    fitted: float  # the kept kind's score on the rows it was fitted on
    cv: dict[str, float]  # kind -> cross-validated score (each fold decided with thresholds fitted on the others)
    metric: str = ""  # the score's name, for people

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return decide(probs, self.values, self.at_least_one)

    def summary(self) -> str:
        tried = ", ".join(f"{k} {v:.4f}" for k, v in self.cv.items())
        shown = (f"{self.values[0]:.2f}" if self.kind != "per_tag"
                 else f"{self.values.min():.2f}-{self.values.max():.2f} over {len(self.values)} tags")
        return (f"tag thresholds: {self.kind} ({shown}) by cross-validated OOF {self.metric}: {tried}; "
                f"{self.fitted:.4f} fitted on every row")


def tune(probs: np.ndarray, hot: np.ndarray, folds: np.ndarray, score: Score, kinds: tuple[str, ...] = KINDS,
         at_least_one: bool = True, metric: str = "") -> Thresholds:
    """Fit each of `kinds` on all folds but one, decide the held fold, keep the best cross-validated kind (the
    first of equals), refitted on every row. With fewer than 2 folds, nothing is held out: 0.5 is kept."""
    unique = np.unique(folds)
    if len(unique) < 2:
        kinds = ("fixed",)
    cv = {}
    for kind in kinds:
        held_out = np.zeros_like(hot, dtype=bool)
        for fold in unique:
            held = folds == fold
            held_out[held] = decide(probs[held], fit(kind, probs[~held], hot[~held], score, at_least_one), at_least_one)
        cv[kind] = score(held_out.astype(np.float64), hot)
    kept = max(kinds, key=lambda k: cv[k])  # max keeps the first of equals
    values = fit(kept, probs, hot, score, at_least_one)
    return Thresholds(kept, values, at_least_one, score(decide(probs, values, at_least_one).astype(np.float64), hot), cv,
                      metric)
