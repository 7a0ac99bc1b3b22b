"""The competition metrics against scikit-learn's, and the registry against the epoch report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from orchestrator.metrics import METRICS, accuracy, log_loss, macro_auc, macro_f1, quadratic_kappa
from orchestrator.protocol import EpochReport


def random_probs(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(classes), rng.integers(0, classes, rows - classes)])  # every class present
    logits = rng.normal(size=(rows, classes)) + 1.5 * np.eye(classes)[y]  # informative, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, y


@pytest.mark.parametrize("classes,seed", [(2, 0), (5, 1), (12, 2)])
def test_each_metric_equals_sklearns(classes, seed):
    probs, y = random_probs(300, classes, seed)
    predicted = probs.argmax(1)
    assert accuracy(probs, y) == pytest.approx(sk.accuracy_score(y, predicted))
    assert macro_f1(probs, y) == pytest.approx(sk.f1_score(y, predicted, average="macro"))
    assert log_loss(probs, y) == pytest.approx(sk.log_loss(y, probs, labels=np.arange(classes)))
    expected_auc = (sk.roc_auc_score(y, probs[:, 1]) if classes == 2
                    else sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert macro_auc(probs, y) == pytest.approx(expected_auc)
    assert quadratic_kappa(probs, y) == pytest.approx(sk.cohen_kappa_score(y, predicted, weights="quadratic"))


def test_auc_with_ties_and_a_class_absent_from_the_targets():
    probs = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.9, 0.1, 0.0]])
    y = np.array([0, 1, 1, 0])  # class 2 has no positive row: left out of the mean, as sklearn's labels= would
    expected = np.mean([sk.roc_auc_score(y == k, probs[:, k]) for k in (0, 1)])
    assert macro_auc(probs, y) == pytest.approx(expected)


def test_log_loss_is_clipped_as_kaggle_scores_it():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert log_loss(probs, np.array([1, 1])) == pytest.approx(-np.log(1e-15) / 2, rel=1e-6)  # finite, not inf


def test_registry_modes_scores_and_the_epoch_report_agree():
    assert EpochReport.scores() == {name: metric.mode for name, metric in METRICS.items()}
    probs, y = random_probs(100, 4, 3)
    hot = np.eye(4)[y]
    hot[::3, 0] = 1  # some images with two tags
    for metric in METRICS.values():
        target = y if "multiclass" in metric.tasks else hot
        assert metric.shown(metric.score(probs, target)) == pytest.approx(metric.value(probs, target))  # and back
    assert METRICS["val_logloss"].score(probs, y) == pytest.approx(-log_loss(probs, y))
    assert METRICS["val_logloss"].calibrated and not METRICS["val_auc"].calibrated


@pytest.mark.parametrize("seed", [0, 1])
def test_each_tag_metric_equals_sklearns(seed):
    from orchestrator.metrics import f1_macro_tags, f1_micro, f1_samples, f2_samples, mean_average_precision

    rng = np.random.default_rng(seed)
    hot = (rng.random((300, 7)) < 0.3).astype(int)
    hot[np.arange(7), np.arange(7)] = 1  # every tag has a positive row
    probs = np.clip(0.45 * hot + 0.6 * rng.random(hot.shape), 0, 1)
    called = probs >= 0.5
    assert f2_samples(probs, hot) == pytest.approx(sk.fbeta_score(hot, called, beta=2, average="samples", zero_division=0))
    assert f1_samples(probs, hot) == pytest.approx(sk.f1_score(hot, called, average="samples", zero_division=0))
    assert f1_micro(probs, hot) == pytest.approx(sk.f1_score(hot, called, average="micro", zero_division=0))
    assert f1_macro_tags(probs, hot) == pytest.approx(sk.f1_score(hot, called, average="macro", zero_division=0))
    assert mean_average_precision(probs, hot) == pytest.approx(sk.average_precision_score(hot, probs, average="macro"))
    assert macro_auc(probs, hot) == pytest.approx(sk.roc_auc_score(hot, probs, average="macro"))
    expected = np.mean([sk.log_loss(hot[:, k], probs[:, k], labels=[0, 1]) for k in range(7)])
    assert log_loss(probs, hot) == pytest.approx(expected)
