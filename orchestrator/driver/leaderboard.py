"""The grid's leaderboard: one row per config with its fold scores, mean +- std, epochs, status, cost and
ensemble weight (filled in by the ensemble job, which rewrites it on the grid's parent run)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import pandas as pd

from orchestrator.board import COST_COLUMNS
from orchestrator.driver.trials import TrialRecord
from orchestrator.render import short_value
from orchestrator.tracking.cost import total


def leaderboard(records: Iterable[TrialRecord], mode: str) -> pd.DataFrame:
    """Configs ranked by their mean fold score (`mode` "max" | "min"); configs with no score last."""
    configs: dict[str, list[TrialRecord]] = defaultdict(list)
    for record in records:
        configs[record.planned.config.config_id].append(record)
    folds = sorted({r.planned.config.fold for group in configs.values() for r in group if not r.planned.config.refit})
    axes = sorted({path for group in configs.values() for r in group for path in r.planned.searched})
    rows = [_row(sorted(group, key=lambda r: r.planned.config.fold), folds, axes) for group in configs.values()]
    if not any(r.planned.config.refit for group in configs.values() for r in group):
        for row in rows:
            row.pop("refit")
    # no trial at all (a searcher's run stopped before its first): still the columns
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["config_id", "model", "mean", "std", "epochs", "status",
                                                                  *COST_COLUMNS])
    frame = frame.sort_values("mean", ascending=mode == "min", na_position="last", kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["weight"] = np.nan
    return frame


def _row(group: list[TrialRecord], folds: list[int], axes: list[str]) -> dict:
    """A config's row: its folds' scores and statuses, its refit's (if any) status and epochs, the cost of all."""
    refit = next((r for r in group if r.planned.config.refit), None)
    cost = total(r.cost for r in group)
    group = [r for r in group if r is not refit]  # a refit is planned from its folds' records: they are here too
    first = group[0].planned
    scores = {r.planned.config.fold: r.score if r.score is not None and math.isfinite(r.score) else None for r in group}
    values = [s for s in scores.values() if s is not None]
    statuses = Counter(str(r.status) for r in group)
    return {"config_id": first.config.config_id, "model": first.config.model.name,
            **{axis: short_value(first.searched.get(axis)) for axis in axes},
            **{f"fold_{k}": scores.get(k) for k in folds},
            "mean": float(np.mean(values)) if values else np.nan,
            "std": float(np.std(values)) if values else np.nan,
            "epochs": "/".join(str(r.epochs) for r in group),
            "status": ", ".join(f"{n} {status.lower()}" for status, n in statuses.items()),
            "refit": "" if refit is None else f"{str(refit.status).lower()}, {refit.epochs} epochs",
            "wall_s": cost.wall_s, "cpu_hours": cost.cpu_hours, "gpu_hours": cost.gpu_hours}
