"""Member weights fitted on out-of-fold probabilities.

Scores compare as (metric, -log loss): accuracy and F1 move in coarse steps, so
log loss breaks their ties and keeps greedy selection from stalling on plateaus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrator.blend import blend
from orchestrator.scoring import fast_macro_f1

Score = Callable[[np.ndarray, np.ndarray], float]


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def macro_f1(probs: np.ndarray, y: np.ndarray) -> float:
    return fast_macro_f1(probs.argmax(1), y, probs.shape[1])


def neg_log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return -log_loss(probs, y)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


# the grid's scheduler.metric -> how an ensemble is scored (higher is better)
SCORERS: dict[str, Score] = {"val_acc": accuracy, "val_f1": macro_f1, "val_loss": neg_log_loss}


def _key(probs: np.ndarray, y: np.ndarray, score: Score) -> tuple[float, float]:
    return score(probs, y), -log_loss(probs, y)


def hill_climb(members: list[np.ndarray], y: np.ndarray, score: Score, iterations: int = 50) -> np.ndarray:
    """Greedy forward selection with replacement (Caruana et al. 2004).

    Starts from the best single member and adds a member only while that strictly
    improves (score, -log loss): the result is never worse than the best member.
    """
    keys = [_key(m, y, score) for m in members]
    counts = np.zeros(len(members))
    counts[max(range(len(keys)), key=keys.__getitem__)] = 1
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
    return np.full(len(members), 1 / len(members))  # mean, rank, vote: equal weights (rank transforms inputs)


METHODS = ("hill_climb", "mean", "rank", "vote")  # what `auto` compares, in the order that wins a tie


def inputs_for(method: str, probs: list[np.ndarray]) -> list[np.ndarray]:
    """What a method blends: ranks for `rank`, probabilities for the others."""
    return [rank_transform(p) for p in probs] if method == "rank" else probs


@dataclass(frozen=True)
class Fit:
    method: str
    weights: np.ndarray
    oof: np.ndarray  # the blended OOF (rows, classes)
    score: float
    tried: dict[str, float]  # method -> OOF score (auto: every method; else the one)


def fit_ensemble(method: str, probs: list[np.ndarray], y: np.ndarray, score: Score, iterations: int) -> Fit:
    """Weights for `method` on the members' OOF probabilities; `auto` fits every method and keeps the best OOF score."""
    fits = []
    for name in METHODS if method == "auto" else (method,):
        inputs = inputs_for(name, probs)
        weights = fit_weights(name, inputs, y, score, iterations)
        blended = blend(inputs, weights, name)
        fits.append(Fit(name, weights, blended, score(blended, y), {}))
    best = max(fits, key=lambda f: f.score)  # max keeps the first of equal scores: METHODS' order
    return dataclasses.replace(best, tried={f.method: f.score for f in fits})
