"""The grid's leaderboard: one row per config with its fold scores, mean +- std, epochs, status, cost and
ensemble weight (filled in by the ensemble job, which rewrites it on the grid's parent run)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import pandas as pd

from orchestrator.driver.trials import TrialRecord
from orchestrator.render import render_table, short_value
from orchestrator.tracking.cost import total

COST_COLUMNS = ("wall_s", "cpu_hours", "gpu_hours")


def leaderboard(records: Iterable[TrialRecord], mode: str) -> pd.DataFrame:
    """Configs ranked by their mean fold score (`mode` "max" | "min"); configs with no score last."""
    configs: dict[str, list[TrialRecord]] = defaultdict(list)
    for record in records:
        configs[record.planned.config.config_id].append(record)
    folds = sorted({r.planned.config.fold for group in configs.values() for r in group})
    axes = sorted({path for group in configs.values() for r in group for path in r.planned.searched})
    rows = [_row(sorted(group, key=lambda r: r.planned.config.fold), folds, axes) for group in configs.values()]
    # no trial at all (a searcher's run stopped before its first): still the columns
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["config_id", "model", "mean", "std", "epochs", "status",
                                                                  *COST_COLUMNS])
    frame = frame.sort_values("mean", ascending=mode == "min", na_position="last", kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame["weight"] = np.nan
    return frame


def _row(group: list[TrialRecord], folds: list[int], axes: list[str]) -> dict:
    first = group[0].planned
    scores = {r.planned.config.fold: r.best if r.best is not None and math.isfinite(r.best) else None for r in group}
    values = [s for s in scores.values() if s is not None]
    cost = total(r.cost for r in group)
    statuses = Counter(str(r.status) for r in group)
    return {"config_id": first.config.config_id, "model": first.config.model.name,
            **{axis: short_value(first.searched.get(axis)) for axis in axes},
            **{f"fold_{k}": scores.get(k) for k in folds},
            "mean": float(np.mean(values)) if values else np.nan,
            "std": float(np.std(values)) if values else np.nan,
            "epochs": "/".join(str(r.epochs) for r in group),
            "status": ", ".join(f"{n} {status.lower()}" for status, n in statuses.items()),
            "wall_s": cost.wall_s, "cpu_hours": cost.cpu_hours, "gpu_hours": cost.gpu_hours}


def read_csv(text: str) -> pd.DataFrame:
    """A leaderboard as `leaderboard.csv` holds it (config ids and searched values stay text)."""
    import io

    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    numeric = [c for c in frame.columns if c.startswith("fold_") or c in ("mean", "std", "weight", *COST_COLUMNS)]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column].replace("", np.nan))
    frame["rank"] = frame["rank"].astype(int)
    return frame


def render(frame: pd.DataFrame, metric: str) -> str:
    """The leaderboard as the plain table the end of a run prints."""
    header = [_title(c, metric) for c in frame.columns]
    return render_table(header, [[_cell(c, v) for c, v in row.items()] for _, row in frame.iterrows()])


def markdown(frame: pd.DataFrame, metric: str, top: int = 10) -> str:
    """The first `top` rows as a markdown table (a run description)."""
    header = [_title(c, metric) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c, v) for c, v in row.items()) + " |" for _, row in frame.head(top).iterrows()]
    more = f"\n\n({len(frame) - top} more configs in `leaderboard.csv`)" if len(frame) > top else ""
    return "\n".join(lines) + more


def _title(column: str, metric: str) -> str:
    if column == "mean":
        return f"mean {metric}"
    return column.replace("fold_", "f") if column.startswith("fold_") else column


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if column in ("cpu_hours", "gpu_hours"):
        return f"{value:.4f}"
    if column == "wall_s":
        return f"{value:.0f}"
    if column == "weight":
        return f"{value:.3f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
