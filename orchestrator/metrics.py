"""Competition metrics: one registry of name -> (mode, task, a function of class probabilities and targets).

The loop's validation computes every entry of the trial's task each epoch (EpochReport carries them), the
scheduler and the leaderboard rank by `scheduler.metric`, and the ensemble fits its weights and chooses its
method by the same entry. Each function takes probabilities (rows, classes) and targets, integer classes
(rows,) for a multiclass task or multi-hot tags (rows, tags) for a multilabel one, and returns the value as the
competition reports it; `Metric.score` turns it into higher-is-better for the code that maximises. Tag metrics
of probabilities call a tag at 0.5 (the ensemble tunes per-tag thresholds, ensemble/thresholds.py).
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
    """Multi-class log loss as Kaggle scores it: probabilities clipped to [1e-15, 1 - 1e-15], rows renormalised;
    for multi-hot `y`, the binary log loss averaged over every (row, tag)."""
    clipped = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    if y.ndim == 2:
        return float(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).mean())
    clipped /= clipped.sum(1, keepdims=True)
    return float(-np.log(clipped[np.arange(len(y)), y]).mean())


def macro_auc(probs: np.ndarray, y: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the classes (sklearn's `multi_class="ovr", average="macro"`), by ranks;
    for multi-hot `y`, each tag's ROC AUC averaged (sklearn's `average="macro"`).

    A class with no positive or no negative row among `y` has no AUC and is left out of the mean (sklearn
    refuses such input); NaN when no class has one. With two classes this is the binary AUC.
    """
    from scipy.stats import rankdata

    n, classes = probs.shape
    ranks = rankdata(probs, axis=0)  # ties get their mean rank: the Mann-Whitney form of the AUC
    if y.ndim == 2:  # tags: each one's own positives
        positives, rank_sums = y.sum(0).astype(np.float64), (ranks * y).sum(0)
    else:
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


def called(probs: np.ndarray, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """Tags called (rows, tags) bool: probability at or above the (per-tag) threshold."""
    return probs >= threshold


def _counts(probs: np.ndarray, y: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hit = called(probs)
    truth = y > 0.5
    return (hit & truth).sum(axis), (hit & ~truth).sum(axis), (~hit & truth).sum(axis)


def _f_beta(tp, fp, fn, beta: float) -> np.ndarray:
    """F-beta by counts; 0 where nothing is true or called (sklearn's zero_division=0)."""
    b2 = beta * beta
    top = (1 + b2) * np.asarray(tp, dtype=np.float64)
    bottom = top + b2 * fn + fp
    return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)


def f2_samples(probs: np.ndarray, y: np.ndarray) -> float:
    """F-beta (beta 2: recall counts 4x) per image, averaged (sklearn's fbeta_score(average="samples"))."""
    return float(_f_beta(*_counts(probs, y, 1), 2.0).mean())


def f1_samples(probs: np.ndarray, y: np.ndarray) -> float:
    return float(_f_beta(*_counts(probs, y, 1), 1.0).mean())


def f1_micro(probs: np.ndarray, y: np.ndarray) -> float:
    return float(_f_beta(*_counts(probs, y, None), 1.0))


def f1_macro_tags(probs: np.ndarray, y: np.ndarray) -> float:
    return float(_f_beta(*_counts(probs, y, 0), 1.0).mean())


def mean_average_precision(probs: np.ndarray, y: np.ndarray) -> float:
    """Average precision per tag, averaged over the tags with a positive row (sklearn's average_precision_score,
    average="macro", whose step-wise form this is; tied scores are ranked in row order)."""
    order = np.argsort(-probs, axis=0, kind="stable")
    hits = np.take_along_axis(y > 0.5, order, axis=0).astype(np.float64)
    positives = hits.sum(0)
    precision = np.cumsum(hits, 0) / np.arange(1, len(y) + 1)[:, None]
    ap = np.divide((precision * hits).sum(0), positives, out=np.zeros(y.shape[1]), where=positives > 0)
    return float(ap[positives > 0].mean()) if (positives > 0).any() else float("nan")


@dataclass(frozen=True)
class Metric:
    mode: str  # "max" | "min": which way is better
    value: Callable[[np.ndarray, np.ndarray], float]  # (probabilities, targets) -> the competition's number
    calibrated: bool = False  # scores probabilities as such: a blend of ranks (ensemble method rank) means nothing to it
    tasks: tuple[str, ...] = ("multiclass",)  # the data tasks it scores (config refuses it for another)
    about: str = ""

    def score(self, probs: np.ndarray, y: np.ndarray) -> float:
        """Higher is better: the value, negated for a metric to minimise."""
        value = self.value(probs, y)
        return value if self.mode == "max" else -value

    def shown(self, score: float) -> float:
        """A `score` back as the competition's number."""
        return score if self.mode == "max" else -score


BOTH, TAGS = ("multiclass", "multilabel"), ("multilabel",)

# scheduler.metric's names; EpochReport has a field of each (tests/unit/test_metrics.py holds them together)
METRICS: dict[str, Metric] = {
    "val_acc": Metric("max", accuracy, about="accuracy of the top class"),
    "val_f1": Metric("max", macro_f1, about="macro F1 of the top class (the mask competition's)"),
    "val_loss": Metric("min", log_loss, calibrated=True, tasks=BOTH,
                       about="the validation loss: cross-entropy (multilabel: binary cross-entropy per tag)"),
    "val_logloss": Metric("min", log_loss, calibrated=True, tasks=BOTH,
                          about="log loss as Kaggle scores it (clipped at 1e-15): for a sample submission with one "
                                "column per class (multilabel: binary, averaged over tags)"),
    "val_auc": Metric("max", macro_auc, tasks=BOTH,
                      about="ROC AUC, one-vs-rest, macro over classes (binary: the AUC; multilabel: macro over tags)"),
    "val_qwk": Metric("max", quadratic_kappa, about="quadratic weighted kappa, for ordered classes (grades)"),
    "val_f2": Metric("max", f2_samples, tasks=TAGS, about="F2 per image, averaged (Planet's)"),
    "val_f1_samples": Metric("max", f1_samples, tasks=TAGS, about="F1 per image, averaged (the multilabel default)"),
    "val_f1_micro": Metric("max", f1_micro, tasks=TAGS, about="F1 over every (image, tag) decision"),
    "val_f1_macro": Metric("max", f1_macro_tags, tasks=TAGS, about="F1 per tag, averaged (Human Protein Atlas')"),
    "val_map": Metric("max", mean_average_precision, tasks=TAGS, about="mean average precision over tags"),
}

DEFAULT_METRIC = {"multiclass": "val_acc", "multilabel": "val_f1_samples"}


def validation_scores(probs: np.ndarray, y: np.ndarray, task: str = "multiclass") -> dict[str, float]:
    """Every metric of the task on one validation fold (the loop's per-epoch scores, val_loss aside)."""
    return {name: metric.value(probs, y) for name, metric in METRICS.items() if name != "val_loss" and task in metric.tasks}
