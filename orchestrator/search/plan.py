"""The trial plan: folds x models x search axes, expanded on the driver.

Random axes are drawn here from the grid seed (not by Tune), so the plan is known
before anything runs (`--dry-run` shows exactly it), a rerun draws the same values,
and every trial has a stable identity: config_id = hash of its resolved config.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from orchestrator.config import (
    GridConfig,
    SearchableTrial,
    SearchAxis,
    TrialConfig,
    TrialTables,
    added_later,
    set_path,
    trial_skeleton,
)
from orchestrator.errors import InputError
from orchestrator.render import render_table, short_value

# settings that do not change what a trial learns: left out of its identity (tta is not in the skeleton at all);
# root and test_root say where the data lies, its fingerprint what it is
_NOT_IDENTITY = (("data", "folds", "use"), ("data", "loader_workers"), ("data", "cache"),
                 ("data", "root"), ("data", "test_root"), ("train", "checkpoint"))


@dataclass(frozen=True)
class PlannedTrial:
    config: TrialConfig
    searched: dict[str, Any]  # the search-axis values of this trial, by dotted path

    @property
    def key(self) -> str:
        return self.config.trial_key


def config_id(skeleton: dict[str, Any], data_fingerprint: str = "", schema: type[BaseModel] = SearchableTrial) -> str:
    """Stable 10-hex-digit hash of a trial's resolved, fold-independent config and its data's fingerprint.

    Left out: settings that do not change what a trial learns (_NOT_IDENTITY), and keys added to the schema
    later (config.ADDED_LATER) while they hold their default, so a release that adds a key keeps every id.
    """
    ident = copy.deepcopy(skeleton)
    if data_fingerprint:
        ident["data_fingerprint"] = data_fingerprint
    later = {concrete for path, default in added_later(schema).items() for concrete in _expand(ident, path)
             if _at(ident, concrete) == default}
    for path in (*_NOT_IDENTITY, *later):
        node = ident
        for part in path[:-1]:
            node = node.get(part) or {}
        node.pop(path[-1], None)
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _expand(tree: dict[str, Any], path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`path` with each "*" (a dict's values) replaced by the keys `tree` holds there."""
    if "*" not in path:
        return [path]
    star = path.index("*")
    node = _at(tree, path[:star])
    keys = sorted(node) if isinstance(node, dict) else []
    return [p for key in keys for p in _expand(tree, (*path[:star], key, *path[star + 1:]))]


def _at(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, or a marker no default equals when a node on the way is missing or None."""
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _draw(axis: SearchAxis, rng: np.random.Generator) -> Any:
    kind = axis.kind
    if kind == "choice":
        return axis.choice[int(rng.integers(len(axis.choice)))]
    if kind == "uniform":
        return float(rng.uniform(*axis.uniform))
    if kind == "loguniform":
        low, high = axis.loguniform
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(*axis.randint))


def expand_values(grid: GridConfig) -> list[dict[str, Any]]:
    """Every combination of search values: grid axes crossed, random axes drawn num_samples times."""
    grid_axes = {path: axis.grid for path, axis in grid.search.items() if axis.kind == "grid"}
    random_axes = {path: axis for path, axis in grid.search.items() if axis.kind != "grid"}
    rng = np.random.default_rng(grid.seed)
    samples = [{p: _draw(a, rng) for p, a in random_axes.items()} for _ in range(grid.num_samples if random_axes else 1)]
    crossed = [dict(zip(grid_axes, combo)) for combo in itertools.product(*grid_axes.values())]
    return [{**combo, **sample} for combo in crossed for sample in samples]


def fold_trials(grid: GridConfig, model_index: int, values: dict[str, Any], tables: TrialTables) -> list[PlannedTrial]:
    """One config (a model and search values) as one PlannedTrial per fold to train."""
    skeleton = trial_skeleton(grid, model_index)
    for path, value in values.items():
        set_path(skeleton, path, value)
    cid = config_id(skeleton, tables.fingerprint)
    common = {"name": grid.name, "config_id": cid, "scheduler": grid.scheduler.model_dump(), "resources": grid.resources.model_dump(),
              "tables": tables.model_dump(), "storage": grid.layout.root, "tta": grid.tta.model_dump() if grid.tta else None}
    return [PlannedTrial(TrialConfig.model_validate({**skeleton, **common, "fold": fold}), values)
            for fold in grid.data.folds.folds_to_train()]


def plan_trials(grid: GridConfig, tables: TrialTables) -> list[PlannedTrial]:
    """One PlannedTrial per (config, fold), folds of one config adjacent; duplicates dropped.

    With `searcher: optuna` nothing is planned ahead: TPE proposes configs during the run.
    """
    check_heads(grid, tables)
    if grid.searcher == "optuna":
        return []
    planned, seen = [], set()
    for model_index in range(len(grid.models)):
        for values in expand_values(grid):
            trials = fold_trials(grid, model_index, values, tables)
            if trials[0].config.config_id not in seen:
                seen.add(trials[0].config.config_id)
                planned += trials
    return planned


def check_heads(grid: GridConfig, tables: TrialTables) -> None:
    """A multi-head model must compose exactly the data's classes (checked once the data is read)."""
    from orchestrator.train.heads import HEADS

    for index, model in enumerate(grid.models):
        layout = HEADS.get(model.heads) if model.heads else None
        if layout is not None and tables.fingerprint and layout.classes != tables.num_classes:
            raise InputError(f"models[{index}].heads: {model.heads!r} composes {layout.classes} classes "
                             f"({' x '.join(f'{n} {k}' for n, k in zip(layout.names, layout.sizes))}) but "
                             f"{grid.data.source} data has {tables.num_classes}; use it with the mask source")


def trial_count(grid: GridConfig, plan: list[PlannedTrial]) -> int:
    """Trials this run makes: the plan, or (searcher: optuna) num_samples configs x the folds to train."""
    return grid.num_samples * len(grid.data.folds.folds_to_train()) if grid.searcher == "optuna" else len(plan)


def format_plan(plan: list[PlannedTrial]) -> str:
    """The `--dry-run` table: one row per trial."""
    axes = sorted({path for p in plan for path in p.searched})
    header = ["#", "config_id", "fold", "model"] + axes
    rows = [[str(i), p.config.config_id, str(p.config.fold), p.config.model.name] + [short_value(p.searched.get(a)) for a in axes]
            for i, p in enumerate(plan)]
    return render_table(header, rows)
