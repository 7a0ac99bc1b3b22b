"""Plain-text tables for the console (the plan, the leaderboard, the ensemble's reports)."""

from __future__ import annotations

from typing import Any


def short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
