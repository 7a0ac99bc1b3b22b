"""Scores by counting, shared by the loop (per-head metrics) and the ensemble (decision tuning, held-out scores)."""

from __future__ import annotations

import numpy as np


def fast_macro_f1(predicted: np.ndarray, y: np.ndarray, classes: int) -> float:
    """Macro F1 over the classes present in `y` or `predicted` (sklearn's `average="macro"`), by counting.

    A few hundred times faster than sklearn's on small arrays, which decision tuning calls thousands of times.
    """
    tp = np.bincount(y[predicted == y], minlength=classes).astype(np.float64)
    support, called = np.bincount(y, minlength=classes), np.bincount(predicted, minlength=classes)
    present = (support + called) > 0
    f1 = np.divide(2 * tp, support + called, out=np.zeros(classes), where=present)
    return float(f1[present].mean())
