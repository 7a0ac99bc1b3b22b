"""`searcher: optuna`: TPE proposes configs through Ray Tune, folds still run in parallel.

Optuna learns per config, but a config here is several trials (one per fold). The
`FoldSearcher` wraps Ray's OptunaSearch: each TPE suggestion becomes one Tune trial
per fold, and TPE is told the mean of that config's fold scores once they are all in.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from orchestrator.config import GridConfig, SearchAxis

MODEL_PARAM = "model"  # the categorical parameter that picks one of grid.models


def _distribution(axis: SearchAxis) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind = axis.kind
    if kind in ("grid", "choice"):
        return CategoricalDistribution(getattr(axis, kind))
    if kind == "uniform":
        return FloatDistribution(*axis.uniform)
    if kind == "loguniform":
        return FloatDistribution(*axis.loguniform, log=True)
    return IntDistribution(axis.randint[0], axis.randint[1] - 1)  # randint's high is exclusive


def optuna_space(grid: GridConfig) -> dict[str, Any]:
    """Every search axis (grid and choice become categorical) plus the model, as Optuna distributions."""
    from optuna.distributions import CategoricalDistribution

    space = {path: _distribution(axis) for path, axis in grid.search.items()}
    if len(grid.models) > 1:
        space[MODEL_PARAM] = CategoricalDistribution(list(range(len(grid.models))))
    return space


class FoldSearcher(Searcher):
    """Turns each suggestion of a config-level searcher into one trial config per fold.

    `expand(params)` -> the Tune configs of that config's folds. The wrapped searcher
    sees one trial per config and learns from the mean fold score (a failed fold is
    left out of the mean; a config whose folds all failed is reported as an error).
    """

    def __init__(self, inner: Searcher, expand: Callable[[dict[str, Any]], list[dict[str, Any]]], configs: int,
                 metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.inner, self.expand, self.budget = inner, expand, configs
        self.proposed = 0
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.owner: dict[str, str] = {}  # Tune trial id -> config id of the wrapped searcher
        self.scores: dict[str, list[float | None]] = {}
        self.expected: dict[str, int] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space was given to the wrapped searcher at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue:
            if self.proposed >= self.budget:
                return Searcher.FINISHED
            config_key = f"config_{self.proposed}"
            params = self.inner.suggest(config_key)
            if params is None or params == Searcher.FINISHED:
                return params
            self.proposed += 1
            folds = self.expand(params)
            self.queue = [(config_key, config) for config in folds]
            self.scores[config_key], self.expected[config_key] = [], len(folds)
        config_key, config = self.queue.pop(0)
        self.owner[trial_id] = config_key
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        config_key = self.owner.pop(trial_id, None)
        if config_key is None:
            return
        score = None if error or not result else result.get(self.metric)
        self.scores[config_key].append(score)
        if len(self.scores[config_key]) == self.expected[config_key]:
            done = [s for s in self.scores[config_key] if s is not None]
            if done:
                self.inner.on_trial_complete(config_key, {self.metric: statistics.fmean(done)})
            else:
                self.inner.on_trial_complete(config_key, error=True)


def optuna_searcher(grid: GridConfig, expand: Callable[[int, dict[str, Any]], list[dict[str, Any]]]) -> FoldSearcher:
    """TPE (seeded by the grid seed) over the grid's axes; `expand(model_index, values)` makes the fold configs."""
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    metric, mode = grid.scheduler.metric, grid.scheduler.mode
    inner = OptunaSearch(space=optuna_space(grid), metric=metric, mode=mode, sampler=TPESampler(seed=grid.seed))

    def fold_configs(params: dict[str, Any]) -> list[dict[str, Any]]:
        values = {k: v for k, v in params.items() if k != MODEL_PARAM}
        return expand(int(params.get(MODEL_PARAM, 0)), values)

    return FoldSearcher(inner, fold_configs, grid.num_samples, metric, mode)
