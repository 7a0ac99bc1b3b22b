"""The leaderboard as text and back: `leaderboard.csv` read, the console table, the markdown of a run description.

A leaf module (pandas only): the driver writes the leaderboard (driver/leaderboard.py builds it from the trials),
the ensemble job reads it back and adds the members' weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.render import render_table

COST_COLUMNS = ("wall_s", "cpu_hours", "gpu_hours")


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
