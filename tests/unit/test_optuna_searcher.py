"""searcher: optuna — TPE proposals become one trial per fold; TPE learns each config's mean fold score."""

from __future__ import annotations

import pytest
from ray.tune.search import Searcher

from orchestrator.config import parse_grid
from orchestrator.search.optuna import FoldSearcher, optuna_searcher, optuna_space


class Scripted(Searcher):
    """A config-level searcher that proposes x = 0, 1, 2, ... and records what it is told."""

    def __init__(self):
        super().__init__(metric="val_acc", mode="max")
        self.told, self.count = {}, 0

    def suggest(self, trial_id):
        self.count += 1
        return {"x": self.count - 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told[trial_id] = "error" if error else result["val_acc"]


def test_each_suggestion_becomes_one_trial_per_fold_and_the_mean_is_told():
    inner = Scripted()
    searcher = FoldSearcher(inner, lambda p: [{"x": p["x"], "fold": f} for f in (0, 1, 2)], configs=2, metric="val_acc", mode="max")
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [(c["x"], c["fold"]) for c in configs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert searcher.suggest("t6") == Searcher.FINISHED
    for i, score in enumerate([0.5, 0.7, 0.9]):
        searcher.on_trial_complete(f"t{i}", {"val_acc": score})
    searcher.on_trial_complete("t3", {"val_acc": 0.2})
    searcher.on_trial_complete("t4", error=True)
    assert inner.told == {"config_0": pytest.approx(0.7)}  # config_1 still has a fold out
    searcher.on_trial_complete("t5", {"val_acc": 0.4})
    assert inner.told["config_1"] == pytest.approx(0.3)  # the failed fold is left out of the mean


def grid(**extra):
    return parse_grid({"name": "o", "data": {"source": "sketch_csv", "root": "d"},
                       "models": [{"name": "test_resnet"}, {"name": "test_vit"}],
                       "search": {"train.optimizer.lr": {"loguniform": [1e-4, 1e-1]},
                                  "train.batch_size": {"grid": [16, 32]}, "train.epochs": {"randint": [1, 4]}},
                       "searcher": "optuna", "num_samples": 4, **extra})


def test_space_maps_every_axis_and_the_model():
    space = optuna_space(grid())
    assert space["train.optimizer.lr"].log and space["train.batch_size"].choices == (16, 32)
    assert (space["train.epochs"].low, space["train.epochs"].high) == (1, 3) and space["model"].choices == (0, 1)


def test_tpe_is_seeded_and_proposals_are_whole_trial_sets():
    def proposals():
        expanded = []
        searcher = optuna_searcher(grid(), lambda model, values: [{"model": model, **values, "fold": f} for f in (0, 1)])
        for i in range(8):
            config = searcher.suggest(f"t{i}")
            expanded.append(config)
            searcher.on_trial_complete(f"t{i}", {"val_acc": 1 - config["train.optimizer.lr"]})
        assert searcher.suggest("t8") == Searcher.FINISHED
        return expanded

    first = proposals()
    assert first == proposals()  # same seed, same proposals
    assert all(1e-4 <= c["train.optimizer.lr"] <= 1e-1 and c["train.batch_size"] in (16, 32) for c in first)
    assert [c["fold"] for c in first] == [0, 1] * 4 and all(a == {**b, "fold": 0} for a, b in zip(first[::2], first[1::2]))
