"""Weight fitting on OOF probabilities."""

from __future__ import annotations

import numpy as np

from orchestrator.blend import blend
from orchestrator.ensemble.weights import accuracy, fit_weights, hill_climb, rank_transform


def noisy_members(seed=0, n=400, classes=5, members=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    out = []
    for m in range(members):
        logits = rng.normal(size=(n, classes)) * 1.0
        logits[np.arange(n), y] += 0.6 + 0.2 * m  # members of different strength, independent errors
        p = np.exp(logits)
        out.append(p / p.sum(1, keepdims=True))
    return out, y


def test_hill_climb_never_worse_than_best_member():
    for seed in range(5):
        members, y = noisy_members(seed)
        weights = hill_climb(members, y, accuracy)
        best = max(accuracy(m, y) for m in members)
        assert accuracy(blend(members, weights), y) >= best
        assert np.isclose(weights.sum(), 1) and (weights >= 0).all()


def test_hill_climb_combines_independent_members():
    members, y = noisy_members(1, n=2000)
    weights = hill_climb(members, y, accuracy)
    assert (weights > 0).sum() >= 2
    assert accuracy(blend(members, weights), y) > max(accuracy(m, y) for m in members) + 0.02


def test_single_member_gets_all_weight():
    members, y = noisy_members(members=1)
    assert hill_climb(members, y, accuracy).tolist() == [1.0]


def test_mean_and_rank():
    members, y = noisy_members()
    assert np.allclose(fit_weights("mean", members, y, accuracy, 10), 0.25)
    ranks = rank_transform(members[0])
    assert ranks.min() == 0 and ranks.max() == 1 and (ranks.argmax(0) == members[0].argmax(0)).all()
