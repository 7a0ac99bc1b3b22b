"""Weight fitting on OOF probabilities."""

from __future__ import annotations

import numpy as np

from orchestrator.blend import blend
from orchestrator.ensemble.weights import cross_validate, fit_ensemble, fit_weights, held_up, hill_climb, rank_transform
from orchestrator.metrics import accuracy


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
    assert set(fit.tried) == {"hill_climb", "mean", "rank", "vote", "best"}
    assert fit.score == max(fit.tried.values()) == accuracy(fit.oof, y)
    assert fit_ensemble("vote", members, y, accuracy, 20).tried.keys() == {"vote"}


def test_best_is_the_best_member_alone_the_choice_auto_makes_when_no_blend_holds_up():
    members, y = noisy_members(3, n=600)
    fit = fit_ensemble("best", members, y, accuracy, 20)
    assert fit.weights.tolist() == [float(i == np.argmax([accuracy(m, y) for m in members])) for i in range(len(members))]
    assert fit.score == max(accuracy(m, y) for m in members)

    # one strong member and three weak ones on 60 rows: hill climbing mixes them in for +8 points on its own rows,
    # which cross-validation shows to be noise; auto keeps the strong member alone
    rng = np.random.default_rng(14)
    y = rng.integers(5, size=60)
    members = []
    for strength in (1.6, 0.4, 0.4, 0.4):
        logits = rng.normal(size=(60, 5))
        logits[np.arange(60), y] += strength
        members.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    fit = fit_ensemble("auto", members, y, accuracy, 20, np.arange(60) % 3)
    assert max(fit.tried, key=fit.tried.get) == "hill_climb" and fit.tried["hill_climb"] > fit.tried["best"] + 0.05
    assert fit.method == "best" and fit.cv_score == max(fit.tried_cv.values()) > fit.tried_cv["hill_climb"]
    assert fit.weights.tolist() == [1.0, 0.0, 0.0, 0.0]


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


def crossed_members():
    """Two members, each right (and sure) on one fold's rows and mildly wrong on the other's: together they are right
    everywhere, but hill climbing on one fold alone picks the member that is right there, wrong on the held fold."""
    y, folds = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    a = np.array([[0.9, 0.1], [0.1, 0.9], [0.4, 0.6], [0.6, 0.4]])
    b = np.array([[0.4, 0.6], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9]])
    return [a, b], y, folds


def test_the_cross_validated_score_blends_each_fold_with_weights_fitted_on_the_others():
    members, y, folds = crossed_members()
    held_out, fold_weights = cross_validate("hill_climb", members, y, folds, accuracy, 10)
    assert fold_weights.tolist() == [[0.0, 1.0], [1.0, 0.0]]  # held fold 0: fitted on fold 1, where b is right
    assert held_out.argmax(1).tolist() == [1, 0, 1, 0]  # so every held row is wrong
    fit = fit_ensemble("hill_climb", members, y, accuracy, 10, folds)
    assert fit.cv_score == 0.0 and fit.tried_cv == {"hill_climb": 0.0}
    assert fit.score == 1.0 and fit.tried == {"hill_climb": 1.0}  # in-sample: both members, right on every row
    assert fit.weights.tolist() == [0.5, 0.5]  # each got zero in 1 of 2 fold fits: not a majority, so both are kept
    mean = fit_ensemble("mean", members, y, accuracy, 10, folds)
    assert mean.cv_score == mean.score == 1.0  # equal weights fit nothing: cross-validated = in-sample


def equal_members(seed, n, classes, members, strength):
    """Members of equal strength with independent errors: their mean is a good blend, and any unequal weights that
    score better on these rows fit their noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    out = []
    for _ in range(members):
        logits = rng.normal(size=(n, classes))
        logits[np.arange(n), y] += strength
        p = np.exp(logits)
        out.append(p / p.sum(1, keepdims=True))
    return out, y


def test_auto_chooses_by_the_cross_validated_score_not_the_in_sample_one():
    members, y = equal_members(seed=11, n=60, classes=3, members=5, strength=0.8)
    folds = np.arange(len(y)) % 3
    fit = fit_ensemble("auto", members, y, accuracy, 20, folds)
    in_sample = max(fit.tried, key=fit.tried.get)
    assert in_sample == "hill_climb" and fit.tried["hill_climb"] > max(v for k, v in fit.tried.items() if k != in_sample)
    assert fit.method == "mean" == max(fit.tried_cv, key=fit.tried_cv.get) and fit.chosen_by == "cross-validated"
    assert fit.tried_cv["mean"] > max(v for k, v in fit.tried_cv.items() if k != "mean")
    assert fit.tried_cv["hill_climb"] < fit.tried["hill_climb"]  # its in-sample gain was the noise of these rows
    assert fit.score == fit.tried["mean"] and fit.cv_score == fit.tried_cv["mean"]
    assert fit_ensemble("auto", members, y, accuracy, 20).method == "hill_climb"  # what the in-sample score chose


def test_a_member_whose_weight_does_not_hold_up_gets_none():
    fold_weights = np.array([[0.6, 0.4, 0.0], [0.5, 0.0, 0.5], [0.7, 0.3, 0.0]])  # member 2: zero in 2 of 3 fits
    weights = held_up(np.array([0.5, 0.3, 0.2]), fold_weights, [np.eye(2)] * 3, np.array([0, 1]), accuracy)
    assert np.allclose(weights, [0.625, 0.375, 0.0])  # member 1, zero in 1 of 3, keeps its share
    members, y = noisy_members(7, n=150, classes=4, members=4)
    folds = np.arange(len(y)) % 5
    everywhere = fit_weights("hill_climb", members, y, accuracy, 20)
    _, fold_weights = cross_validate("hill_climb", members, y, folds, accuracy, 20)
    fit = fit_ensemble("hill_climb", members, y, accuracy, 20, folds)
    assert everywhere[0] > 0 and (fold_weights[:, 0] == 0).sum() == 3  # weight on every row, none in 3 of 5 fold fits
    assert fit.weights[0] == 0 and (fit.weights[1:] > 0).all() and np.isclose(fit.weights.sum(), 1)
    assert fit.score == accuracy(blend(members, fit.weights), y) and np.allclose(fit.oof, blend(members, fit.weights))


def test_when_no_member_holds_up_the_best_single_member_gets_all_weight():
    y = np.array([0, 1, 1])
    weak, strong = np.array([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6]]), np.array([[0.6, 0.4], [0.4, 0.6], [0.4, 0.6]])
    fold_weights = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # both zero in 2 of 3 fits
    assert held_up(np.array([0.5, 0.5]), fold_weights, [weak, strong], y, accuracy).tolist() == [0.0, 1.0]


def test_fewer_than_two_folds_fall_back_to_the_in_sample_score():
    members, y = equal_members(seed=11, n=60, classes=3, members=5, strength=0.8)
    for folds in (np.zeros(len(y), dtype=int), None):
        fit = fit_ensemble("auto", members, y, accuracy, 20, folds)
        assert fit.cv_score is None and fit.tried_cv == {} and fit.chosen_by == "in-sample"
        assert fit.method == "hill_climb" and fit.score == max(fit.tried.values())
        assert np.allclose(fit.weights, fit_weights("hill_climb", members, y, accuracy, 20))  # nothing pruned


def test_fit_members_cross_validates_over_the_oof_folds():
    import pandas as pd

    from orchestrator.config import EnsembleConfig
    from orchestrator.ensemble.fit import fit_members
    from orchestrator.ensemble.members import Member

    probs, y = noisy_members(seed=7, n=150, classes=4, members=4)
    oof = pd.DataFrame({"row_id": np.arange(len(y)), "fold": np.arange(len(y)) % 5, "target": y})
    members = [Member(f"c{i}", "test_resnet", oof.join(pd.DataFrame(p, columns=[f"prob_{c}" for c in range(4)])), None,
                      [f"r{i}"]) for i, p in enumerate(probs)]
    result = fit_members(members, "val_acc", EnsembleConfig(top_k=4, method="hill_climb"))
    expected = fit_ensemble("hill_climb", result.oofs, result.y, accuracy, EnsembleConfig().iterations, result.folds)
    assert result.fit.cv_score == expected.cv_score is not None and np.allclose(result.weights, expected.weights)
