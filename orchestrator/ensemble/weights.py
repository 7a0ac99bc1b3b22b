"""Member weights fitted on out-of-fold probabilities, and scored by cross-validation over the OOF folds.

Scores compare as (metric, -log loss): accuracy and F1 move in coarse steps, so
log loss breaks their ties and keeps greedy selection from stalling on plateaus.

A blend scored on the rows its weights were fitted on is optimistic by construction (hill
climbing fits their noise too), so each method is also cross-validated: each fold's rows are
blended with weights fitted on the other folds, as decision.tune does for the offsets. That
score chooses the method under `auto` and is the one that estimates the submission's quality.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrator.blend import blend
from orchestrator.metrics import METRICS, log_loss

Score = Callable[[np.ndarray, np.ndarray], float]  # (probabilities, targets) -> higher is better

def scorer(metric: str) -> Score:
    """How an ensemble is scored for the grid's scheduler.metric: its registry entry, higher is better."""
    return METRICS[metric].score


def _key(probs: np.ndarray, y: np.ndarray, score: Score) -> tuple[float, float]:
    return score(probs, y), -log_loss(probs, y)


def best_member(members: list[np.ndarray], y: np.ndarray, score: Score) -> int:
    """The index of the member with the best (score, -log loss) on these rows (the first of equals)."""
    keys = [_key(m, y, score) for m in members]
    return max(range(len(keys)), key=keys.__getitem__)


def hill_climb(members: list[np.ndarray], y: np.ndarray, score: Score, iterations: int = 50) -> np.ndarray:
    """Greedy forward selection with replacement (Caruana et al. 2004).

    Starts from the best single member and adds a member only while that strictly
    improves (score, -log loss): the result is never worse than the best member.
    """
    counts = np.zeros(len(members))
    counts[best_member(members, y, score)] = 1
    current = blend(members, counts)
    best = _key(current, y, score)
    for _ in range(iterations):
        total = counts.sum()
        trials = [(_key((current * total + m) / (total + 1), y, score), i) for i, m in enumerate(members)]
        key, index = max(trials)
        if key <= best:
            break
        counts[index] += 1
        current, best = blend(members, counts), key
    return counts / counts.sum()


def rank_transform(probs: np.ndarray) -> np.ndarray:
    """Per class, each row's rank among all rows, scaled to [0, 1]."""
    ranks = probs.argsort(0).argsort(0).astype(np.float64)
    return ranks / max(len(probs) - 1, 1)


def fit_weights(method: str, members: list[np.ndarray], y: np.ndarray, score: Score, iterations: int) -> np.ndarray:
    if method == "hill_climb":
        return hill_climb(members, y, score, iterations)
    if method == "best":  # no blend: under cross-validation, whether blending beats picking one member at all
        return np.eye(len(members))[best_member(members, y, score)]
    return np.full(len(members), 1 / len(members))  # mean, rank, vote: equal weights (rank transforms inputs)


METHODS = ("hill_climb", "mean", "rank", "vote", "best")  # what `auto` compares, in the order that wins a tie


def inputs_for(method: str, probs: list[np.ndarray]) -> list[np.ndarray]:
    """What a method blends: ranks for `rank`, probabilities for the others."""
    return [rank_transform(p) for p in probs] if method == "rank" else probs


@dataclass(frozen=True)
class Fit:
    method: str
    weights: np.ndarray  # fitted on every OOF row, less the members that did not hold up (see fit_ensemble)
    oof: np.ndarray  # the blended OOF (rows, classes), with `weights`
    score: float  # in-sample: `oof`'s score, on the rows the weights were fitted on (optimistic)
    cv_score: float | None  # each fold blended with weights fitted on the other folds; None: fewer than 2 folds
    tried: dict[str, float]  # method -> in-sample OOF score of its final weights (auto: every method; else the one)
    tried_cv: dict[str, float]  # method -> cross-validated OOF score, for the same methods; empty when cv_score is None

    @property
    def chosen_by(self) -> str:
        """Which score `auto` compared: the cross-validated one unless there was nothing to hold out."""
        return "in-sample" if self.cv_score is None else "cross-validated"


def fit_ensemble(method: str, probs: list[np.ndarray], y: np.ndarray, score: Score, iterations: int,
                 folds: np.ndarray | None = None, ranks: bool = True, votes: bool = True) -> Fit:
    """Weights for `method` on the members' OOF probabilities; `auto` fits every method in METHODS and keeps the
    best cross-validated score (the in-sample one when `folds`, each row's OOF fold, has fewer than 2 folds or is
    None). Ties go to the first in METHODS; `ranks` False (a metric of calibrated probabilities, like log loss)
    leaves rank out of auto's choice, and `votes` False (multi-hot targets: no one class to vote for) vote.

    A member whose weight does not hold up under the validation gets none: a member that got zero weight in a
    majority (more than half) of the per-fold fits gets zero in the final weights, which are fitted on every row
    and renormalised; if that leaves no member, all weight goes to the best single member. Only hill_climb and
    best give a member zero weight; the other methods' equal weights always hold up.
    """
    folds = np.zeros(len(y), dtype=int) if folds is None else np.asarray(folds)
    # rank blends ranks, not probabilities: a log loss of them means nothing, so auto leaves it out there
    candidates = ([m for m in METHODS if (ranks or m != "rank") and (votes or m != "vote")] if method == "auto"
                  else [method])
    fits = [_fit_method(name, probs, y, folds, score, iterations) for name in candidates]
    cv = fits[0].cv_score is not None
    best = max(fits, key=lambda f: f.cv_score if cv else f.score)  # max keeps the first of equals: METHODS' order
    return dataclasses.replace(best, tried={f.method: f.score for f in fits},
                               tried_cv={f.method: f.cv_score for f in fits} if cv else {})


def _fit_method(method: str, probs: list[np.ndarray], y: np.ndarray, folds: np.ndarray, score: Score,
                iterations: int) -> Fit:
    """One method: its weights on every row, cross-validated over `folds` when there are 2 or more."""
    inputs = inputs_for(method, probs)
    weights, cv_score = fit_weights(method, inputs, y, score, iterations), None
    if len(np.unique(folds)) >= 2:
        held_out, fold_weights = cross_validate(method, probs, y, folds, score, iterations)
        cv_score = score(held_out, y)
        weights = held_up(weights, fold_weights, inputs, y, score)
    blended = blend(inputs, weights, method)
    return Fit(method, weights, blended, score(blended, y), cv_score, {}, {})


def cross_validate(method: str, probs: list[np.ndarray], y: np.ndarray, folds: np.ndarray, score: Score,
                   iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Each fold's rows blended with `method`'s weights fitted on the other folds' rows: (that held-out blend in
    the order of y, each fold's weights as (folds, members) in the order of np.unique(folds))."""
    held_out, fold_weights = np.zeros_like(probs[0], dtype=np.float64), []
    for fold in np.unique(folds):
        held = folds == fold
        weights = fit_weights(method, inputs_for(method, [p[~held] for p in probs]), y[~held], score, iterations)
        # rank ranks the held rows among themselves, as test_predictions ranks the test rows among themselves: the
        # held fold then stands for the test set (ranking on all rows would rank it among rows it is not part of)
        held_out[held] = blend(inputs_for(method, [p[held] for p in probs]), weights, method)
        fold_weights.append(weights)
    return held_out, np.array(fold_weights)


def held_up(weights: np.ndarray, fold_weights: np.ndarray, members: list[np.ndarray], y: np.ndarray,
            score: Score) -> np.ndarray:
    """`weights` less the members that got zero in a majority of `fold_weights`' rows (the per-fold fits),
    renormalised; all weight on the best single member of `members` on these rows when that leaves none."""
    dropped = 2 * (fold_weights == 0).sum(0) > len(fold_weights)
    kept = np.where(dropped, 0.0, weights)
    if kept.sum() > 0:
        return kept / kept.sum()
    return np.eye(len(members))[best_member(members, y, score)]
