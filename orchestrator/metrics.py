"""Competition metrics: one registry of name -> (mode, a function of class probabilities and targets).

The loop's validation computes every entry each epoch (EpochReport carries them), the scheduler and the
leaderboard rank by `scheduler.metric`, and the ensemble fits its weights and chooses its method by the same
entry. Each function takes probabilities (rows, classes) and integer targets and returns the value as the
competition reports it; `Metric.score` turns it into higher-is-better for the code that maximises.
scikit-learn's implementations are the reference in tests/unit/test_metrics.py; these count with numpy
because the ensemble calls them thousands of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrator.scoring import fast_macro_f1

EPS = 1e-15  # Kaggle's clip for log loss: one confident wrong row costs ~34.5, not infinity


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def macro_f1(probs: np.ndarray, y: np.ndarray) -> float:
    return fast_macro_f1(probs.argmax(1), y, probs.shape[1])


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class log loss as Kaggle scores it: probabilities clipped to [1e-15, 1 - 1e-15], rows renormalised."""
    clipped = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    clipped /= clipped.sum(1, keepdims=True)
    return float(-np.log(clipped[np.arange(len(y)), y]).mean())


def macro_auc(probs: np.ndarray, y: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the classes (sklearn's `multi_class="ovr", average="macro"`), by ranks.

    A class with no positive or no negative row among `y` has no AUC and is left out of the mean (sklearn
    refuses such input); NaN when no class has one. With two classes this is the binary AUC.
    """
    from scipy.stats import rankdata

    n, classes = probs.shape
    ranks = rankdata(probs, axis=0)  # ties get their mean rank: the Mann-Whitney form of the AUC
    positives = np.bincount(y, minlength=classes).astype(np.float64)
    rank_sums = np.bincount(y, weights=ranks[np.arange(n), y], minlength=classes)
    negatives = n - positives
    valid = (positives > 0) & (negatives > 0)
    if not valid.any():
        return float("nan")
    auc = (rank_sums[valid] - positives[valid] * (positives[valid] + 1) / 2) / (positives[valid] * negatives[valid])
    return float(auc.mean())


def quadratic_kappa(probs: np.ndarray, y: np.ndarray) -> float:
    """Quadratic weighted kappa of the argmax against `y` (sklearn's `cohen_kappa_score(weights="quadratic")`),
    for ordered classes (grades): class k is the k-th in the sorted class list."""
    classes = probs.shape[1]
    predicted = probs.argmax(1)
    observed = np.zeros((classes, classes))
    np.add.at(observed, (y, predicted), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(len(y), 1)
    grid = np.arange(classes)
    weights = (grid[:, None] - grid[None, :]) ** 2
    denominator = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / denominator) if denominator > 0 else float("nan")


@dataclass(frozen=True)
class Metric:
    mode: str  # "max" | "min": which way is better
    value: Callable[[np.ndarray, np.ndarray], float]  # (probabilities, targets) -> the competition's number
    calibrated: bool = False  # scores probabilities as such: a blend of ranks (ensemble method rank) means nothing to it
    about: str = ""

    def score(self, probs: np.ndarray, y: np.ndarray) -> float:
        """Higher is better: the value, negated for a metric to minimise."""
        value = self.value(probs, y)
        return value if self.mode == "max" else -value

    def shown(self, score: float) -> float:
        """A `score` back as the competition's number."""
        return score if self.mode == "max" else -score


# scheduler.metric's names; EpochReport has a field of each (tests/unit/test_metrics.py holds them together)
METRICS: dict[str, Metric] = {
    "val_acc": Metric("max", accuracy, about="accuracy of the top class"),
    "val_f1": Metric("max", macro_f1, about="macro F1 of the top class (the mask competition's)"),
    "val_loss": Metric("min", log_loss, calibrated=True, about="the validation cross-entropy"),
    "val_logloss": Metric("min", log_loss, calibrated=True,
                          about="multi-class log loss as Kaggle scores it (clipped at 1e-15): for a sample submission "
                                "with one column per class"),
    "val_auc": Metric("max", macro_auc, about="ROC AUC, one-vs-rest, macro over classes (binary: the AUC)"),
    "val_qwk": Metric("max", quadratic_kappa, about="quadratic weighted kappa, for ordered classes (grades)"),
}


def validation_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every metric of the registry on one validation fold (the loop's per-epoch scores, val_loss aside)."""
    return {name: metric.value(probs, y) for name, metric in METRICS.items() if name != "val_loss"}
