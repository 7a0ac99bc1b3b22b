"""The grid's parent MLflow run: opened with the plan, the data and a description of what runs; closed with
the trials' summary, the leaderboard, the cost, where the time went, and a description of what came out.

The flattened grid settings are the parent's params (the trials' own params are only their searched values).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from orchestrator.board import markdown
from orchestrator.config import GridConfig
from orchestrator.driver.resume import Work
from orchestrator.errors import InputError
from orchestrator.layout import RunFiles
from orchestrator.protocol import TrialStatus
from orchestrator.tracking.cost import Cost
from orchestrator.tracking.history import latest_grid_run
from orchestrator.tracking.mlflow_store import Tracker, dataset_input, environment_tags, flatten


def grid_datasets(grid: GridConfig, tables: Any) -> list[Any]:
    """The train rows (with their folds) and the test rows as MLflow dataset inputs."""
    out = [dataset_input(tables.train, f"{grid.name}-train", grid.layout.folds_table, "train")]
    if tables.test is not None:
        out.append(dataset_input(tables.test, f"{grid.name}-test", grid.layout.test_table, "test"))
    return out


def round_note(grid: GridConfig, prepared: Any, experiment_id: str) -> str:
    """A pseudo round's line in its grid run's description, linking its teacher; "" for a plain grid."""
    if grid.pseudo is None or prepared.pseudo is None:
        return ""
    rule = (f"top probability >= {grid.pseudo.threshold}" if grid.pseudo.threshold is not None
            else f"the most confident {grid.pseudo.top_fraction:.0%} of each predicted class")
    teacher = grid.pseudo.teacher
    return (f"**Pseudo-labels:** {len(prepared.pseudo)} of {len(prepared.tables.test)} test rows ({rule}) from "
            f"ensemble run [`{teacher}`](#/experiments/{experiment_id}/runs/{teacher}) join every fold's training rows.")


def open_parent(grid: GridConfig, tracker: Tracker, prepared: Any, stamp: str, work: Work, resume: bool,
                datasets: list[Any]) -> str:
    """--resume: the grid's last parent run, reopened; otherwise a new one with the grid, its data and its plan."""
    if resume:
        last = latest_grid_run(tracker)
        if last is None:
            raise InputError(f"--resume: grid {grid.name!r} has no earlier run in {grid.tracking.uri}; "
                             f"run it without --resume")
        tracker.reopen_run(last.info.run_id, {"resumed": stamp})
        return last.info.run_id
    total = len(work.to_run) + len(work.reused)
    pseudo = {"pseudo_teacher": grid.pseudo.teacher, "pseudo_rows": str(len(prepared.pseudo))} if grid.pseudo else {}
    parent_id = tracker.start_run(f"{'pseudo' if grid.pseudo else 'grid'}-{stamp}", "grid",
                                  tags={"trials": str(total), "reused": str(len(work.reused)), **pseudo, **environment_tags()})
    tracker.log_params(parent_id, flatten(grid.model_dump(mode="json")))
    tracker.log_text(parent_id, yaml.safe_dump(grid.model_dump(mode="json"), sort_keys=False), RunFiles.GRID)
    tables = prepared.tables
    tracker.log_frames(parent_id, {"folds": tables.train, **({"test": tables.test} if tables.test is not None else {})},
                       RunFiles.DATA)
    tracker.log_text(parent_id, json.dumps(tables.classes), RunFiles.CLASSES)
    tracker.log_datasets(parent_id, datasets)
    tracker.describe(parent_id, plan_note(grid, work, len(tables.classes), round_note(grid, prepared, tracker.experiment_id)))
    return parent_id


def plan_note(grid: GridConfig, work: Work, classes: int, pseudo: str = "") -> str:
    folds = grid.data.folds.folds_to_train()
    axes = ", ".join(f"`{path}`" for path in grid.search) or "none"
    return (f"## {grid.name}\n\n**Plan:** {len(work.to_run) + len(work.reused)} trials over folds {folds} "
            f"({len(work.reused)} reused from earlier runs); models {', '.join(m.name for m in grid.models)}; "
            f"searched: {axes}; scheduler {grid.scheduler.kind} on {grid.scheduler.metric} ({grid.scheduler.mode}).\n\n"
            f"**Data:** {grid.data.source} at `{grid.data.root}`, {classes} classes.\n\n"
            + (f"{pseudo}\n\n" if pseudo else "") + "(running: this note is replaced by the results when the grid ends)")


def close_parent(tracker: Tracker, parent_id: str, grid: GridConfig, board: Any, summary_csv: str, cost: Cost,
                 timing: Any, status: TrialStatus, pseudo: str = "") -> None:
    """Log what the grid came to on its parent run and end it with `status`."""
    from orchestrator.tracking.plots import timeline_figure

    tracker.log_text(parent_id, summary_csv, RunFiles.SUMMARY)
    tracker.log_text(parent_id, board.to_csv(index=False), RunFiles.LEADERBOARD)
    tracker.log_metrics(parent_id, cost.metrics(), step=0)
    if timing is not None:
        summary, account = timing
        tracker.log_metrics(parent_id, summary.metrics(), step=0)
        tracker.log_text(parent_id, summary.render(), RunFiles.TIME)
        tracker.log_figure(parent_id, timeline_figure(account), RunFiles.TIMELINE)
    tracker.describe(parent_id, result_note(grid, board, cost, timing[0] if timing else None, status, pseudo))
    tracker.end_run(parent_id, status.mlflow_status)


def result_note(grid: GridConfig, board: Any, cost: Cost, summary: Any, status: TrialStatus, pseudo: str = "") -> str:
    metric = grid.scheduler.metric
    lines = [f"## {grid.name}: {str(status).lower()}", ""] + ([pseudo, ""] if pseudo else [])
    if len(board) and board["mean"].notna().any():
        best = board.iloc[0]
        lines.append(f"**Best config:** `{best['config_id']}` ({best['model']}), {metric} {best['mean']:.4f} "
                     f"+- {best['std']:.4f} over its folds.")
    lines += ["", markdown(board, metric), "",
              f"**Cost:** {cost.wall_s:.0f} s of trial time, {cost.render()} (`{RunFiles.LEADERBOARD}` per config)."]
    if summary is not None:
        lines.append(f"**Time:** {summary.wall:.0f} s of grid wall time; {summary.useful_share:.0%} of the trial slots "
                     f"trained or validated (`{RunFiles.TIME}`).")
    lines += ["", (f"**Next:** `python -m orchestrator.ensemble <grid.yaml>` fits the ensemble on these runs and "
                   f"writes the submission to `{grid.ensemble.output}`.")]
    return "\n".join(lines)
