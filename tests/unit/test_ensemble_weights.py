"""Weight fitting on OOF probabilities."""

from __future__ import annotations

import numpy as np

from orchestrator.blend import blend
from orchestrator.ensemble.weights import accuracy, fit_ensemble, fit_weights, hill_climb, rank_transform


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


def test_hard_voting_follows_the_majority_not_the_most_confident_member():
    confident_wrong = np.array([[0.05, 0.95]])  # one member very sure of class 1
    mild_right = np.array([[0.55, 0.45]])  # two members mildly for class 0
    members = [confident_wrong, mild_right, mild_right]
    assert blend(members, np.ones(3)).argmax(1).tolist() == [1]  # the soft mean goes with the confident one
    voted = blend(members, np.ones(3), "vote")
    assert voted.argmax(1).tolist() == [0] and np.allclose(voted.sum(1), 1)
    assert np.allclose(voted[0], [2 / 3, 1 / 3], atol=1e-5)  # vote shares


def test_a_tied_vote_goes_to_the_soft_mean():
    members = [np.array([[0.9, 0.1]]), np.array([[0.4, 0.6]])]
    assert blend(members, np.ones(2), "vote").argmax(1).tolist() == [0]


def test_auto_keeps_the_method_with_the_best_oof_score():
    members, y = noisy_members(3, n=600)
    fit = fit_ensemble("auto", members, y, accuracy, 20)
    assert set(fit.tried) == {"hill_climb", "mean", "rank", "vote"}
    assert fit.score == max(fit.tried.values()) == accuracy(fit.oof, y)
    assert fit_ensemble("vote", members, y, accuracy, 20).tried.keys() == {"vote"}


def test_the_served_probabilities_are_what_one_image_can_get():
    from orchestrator.blend import shift
    from orchestrator.ensemble.fit import served_probabilities

    members, y = noisy_members(4, n=50, classes=3, members=3)
    offsets = np.array([0.0, 1.0, -1.0])
    for method in ("hill_climb", "vote", "rank"):
        fit = fit_ensemble(method, members, y, accuracy, 10)
        served = served_probabilities(members, fit, offsets)
        expected = blend(members, fit.weights) if method == "rank" else shift(blend(members, fit.weights, method), offsets)
        assert np.allclose(served, expected) and np.allclose(served.sum(1), 1)


def test_the_ensemble_fits_from_members_alone_as_a_notebook_would_call_it():
    """fit_members: no MLflow, no files; the top_k best members on the OOF rows they share, best first."""
    import pandas as pd

    from orchestrator.config import EnsembleConfig
    from orchestrator.ensemble.fit import fit_members
    from orchestrator.ensemble.members import Member

    probs, y = noisy_members(seed=3, n=120, classes=4, members=3)
    members = []
    for index, p in enumerate(probs):
        oof = pd.DataFrame({"row_id": np.arange(len(y)), "fold": np.arange(len(y)) % 3, "target": y})
        oof = oof.join(pd.DataFrame(p, columns=[f"prob_{c}" for c in range(4)]))
        test = pd.DataFrame({"row_id": range(5), "image_path": [f"t{i}.png" for i in range(5)]}).join(
            pd.DataFrame(p[:5], columns=[f"prob_{c}" for c in range(4)]))
        members.append(Member(f"c{index}", "test_resnet", oof.iloc[index:].reset_index(drop=True), test, [f"r{index}"]))
    result = fit_members(members, "val_acc", EnsembleConfig(top_k=2, method="mean"))
    assert [m.config_id for m in result.chosen] == ["c2", "c1"]  # the strongest two (noisy_members: later is stronger)
    assert list(result.rows) == list(range(2, 120)) and result.scores[0] >= result.scores[1]
    assert result.tuning is None and result.test_predictions().shape == (5,)
    assert np.allclose(result.test_probabilities().sum(1), 1)
