"""Macro-F1 decision tuning: per-class offsets fitted on OOF, kept only when they gain under cross-validation."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from orchestrator.blend import shift
from orchestrator.ensemble.decision import fit_offsets, tune
from orchestrator.scoring import fast_macro_f1


def underconfident_on_rare(seed: int, n: int = 1500):
    """A model that rarely calls the rare classes 3 and 4: argmax loses their recall, which macro F1 punishes."""
    rng = np.random.default_rng(seed)
    y = rng.choice(5, size=n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    logits = rng.normal(size=(n, 5))
    logits[np.arange(n), y] += 1.8
    logits[:, 3:] -= 2.0  # biased against the rare classes
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y, rng.integers(0, 5, size=n)


def test_fast_macro_f1_is_sklearns():
    rng = np.random.default_rng(0)
    y, predicted = rng.integers(0, 6, 300), rng.integers(0, 5, 300)  # class 5 never predicted
    assert np.isclose(fast_macro_f1(predicted, y, 7), f1_score(y, predicted, average="macro"))


def test_offsets_raise_macro_f1_on_held_out_rows_of_a_biased_model():
    probs, y, _ = underconfident_on_rare(0)
    offsets = fit_offsets(probs, y)
    assert offsets[3:].min() > offsets[:3].max()  # the rare classes are pushed up against the others
    fresh, y2, _ = underconfident_on_rare(1)  # rows the offsets never saw
    assert fast_macro_f1(shift(fresh, offsets).argmax(1), y2, 5) > fast_macro_f1(fresh.argmax(1), y2, 5) + 0.03


def test_tune_keeps_offsets_only_when_the_cross_validated_gain_is_positive():
    probs, y, folds = underconfident_on_rare(2)
    kept = tune(probs, y, folds)
    assert kept.offsets is not None and kept.cv_after > kept.before and kept.fitted_after >= kept.cv_after - 0.02

    for seed in range(3):  # an unbiased model on few rows: offsets can only fit the rows themselves
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 4, 120)
        logits = rng.normal(size=(120, 4))
        logits[np.arange(120), y] += 2.0
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        dropped = tune(probs, y, rng.integers(0, 4, 120))
        assert dropped.fitted_after > dropped.before  # in-sample it always looks better...
        assert dropped.offsets is None and dropped.cv_after <= dropped.before  # ...cross-validated it does not
    assert tune(probs, y, np.zeros(len(y), dtype=int)).offsets is None  # one fold: nothing to hold out
