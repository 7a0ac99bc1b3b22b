"""`python -m orchestrator.run grid.yaml`: run the grid (folds x models x search axes).

Exit codes: 0 every trial ended (FINISHED or KILLED by the scheduler); 1 a trial
FAILED or anything unexpected; 2 bad input (config, data, a storage that cannot be
written), with the field named; 3 no space left on a disk it writes (`--resume`
continues once there is room); 130 interrupted (Ctrl-C: `--resume` continues).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from orchestrator.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, main_guard, parse_override
from orchestrator.config import GridConfig, PseudoConfig, TrialTables, load_grid
from orchestrator.search.preflight import check_libraries

# MLflow's HTTP client retries a request that gets no answer for about 2 minutes by default; the
# driver's writer retries on its own (tracking/writer.py), so a short client retry (1 + 2 + 4 s)
# lets it see an outage, and a server that is back, within seconds. Users can set their own.
MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="grid.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a grid key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the trial plan and touch nothing")
    parser.add_argument("--address", default=None, help="Ray cluster address ('auto' joins `ray up`); default: local Ray")
    parser.add_argument("--verbose", action="store_true", help="stream Ray worker logs to this console")
    parser.add_argument("--pseudo", default=None, metavar="ENSEMBLE_RUN",
                        help="a pseudo-labelling round: the confident test predictions of this ensemble run (its id, or "
                             "'latest') join every fold's training rows (pseudo.threshold, default 0.9, or pseudo.top_fraction)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the grid's last run: unfinished trials go on from their last checkpoint in their own "
                             "MLflow runs (without it they start afresh); ended trials are reused either way")
    return parser.parse_args(argv)


def dry_run(grid: GridConfig) -> int:
    from orchestrator.data.folds import assign_folds
    from orchestrator.data.prepare import data_fingerprint, load_checked
    from orchestrator.data.sources import SOURCES
    from orchestrator.search.plan import format_plan, plan_trials, trial_count

    note = "data not read: the demo source writes its data on first real run (config ids will differ)"
    if grid.pseudo is not None:
        print(f"pseudo-labelling round from ensemble run {grid.pseudo.teacher}: its rows are chosen when it runs "
              f"(config ids will differ from these)")
    num_classes, fingerprint = 2, ""
    if not SOURCES[grid.data.source].materializes:
        tables = load_checked(grid)  # read-only: checks every row and image
        assign_folds(tables.train, grid.data.folds, grid.seed)  # the folds can be made
        num_classes, fingerprint = len(tables.classes), data_fingerprint(tables)
        note = (f"data ok: {len(tables.train)} train rows, {len(tables.classes)} classes, "
                f"{0 if tables.test is None else len(tables.test)} test rows")
    tables = TrialTables(folds_path="(dry-run)", test_path=None, num_classes=num_classes, fingerprint=fingerprint)
    plan = plan_trials(grid, tables)
    if grid.searcher == "optuna":
        axes = ", ".join([*grid.search, *(["model"] if len(grid.models) > 1 else [])]) or "(no axes)"
        print(f"optuna TPE (seed {grid.seed}) proposes {grid.num_samples} configs over: {axes}; each trains "
              f"{len(grid.data.folds.folds_to_train())} folds = {trial_count(grid, plan)} trials; {note}")
        return EXIT_OK
    configs = len({p.config.config_id for p in plan})
    print(format_plan(plan))
    print(f"\n{len(plan)} trials = {configs} configs x {len(grid.data.folds.folds_to_train())} folds; {note}")
    if fingerprint:  # the ids are the real run's: say what MLflow already holds of them
        prior = {key: old for key, old in earlier_trials(grid).items() if key in {p.key for p in plan}}
        ended = sum(old.ended for old in prior.values())
        print(f"against MLflow ({grid.tracking.uri}): {ended} would be reused (ended earlier), {len(prior) - ended} "
              f"continued with --resume (started afresh without), {len(plan) - len(prior)} trained")
    return EXIT_OK


def earlier_trials(grid: GridConfig) -> dict:
    """What MLflow holds of this grid's trials, read without writing anything ({} with no store or experiment yet)."""
    from pathlib import Path

    from orchestrator.errors import InputError
    from orchestrator.tracking.history import prior_trials
    from orchestrator.tracking.mlflow_store import Tracker

    uri = grid.tracking.uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}  # opening it would create it
    try:
        return prior_trials(Tracker(uri, grid.name, create=False), grid.scheduler.metric)
    except InputError:
        return {}


def run(grid: GridConfig, address: str | None, verbose: bool, resume: bool) -> int:
    from orchestrator.data.cache import framing_for
    from orchestrator.data.prepare import prepare_data, warm_caches
    from orchestrator.layout import RunFiles
    from orchestrator.protocol import TrialStatus
    from orchestrator.report import Progress, summary_rows
    from orchestrator.search.plan import plan_trials, trial_count
    from orchestrator.search.preflight import check_shared_paths, check_storage
    from orchestrator.search.runner import init_ray, predict_remote, settle_local_mode, trial_slots
    from orchestrator.tracking.callback import TrackingCallback
    from orchestrator.tracking.cost import total
    from orchestrator.tracking.grid_run import close_parent, grid_datasets, open_parent, round_note
    from orchestrator.tracking.leaderboard import leaderboard, render
    from orchestrator.tracking.mlflow_store import Tracker, ui_command
    from orchestrator.tracking.predictions import PredictionTasks
    from orchestrator.tracking.resume import sort_out
    from orchestrator.tracking.trial_runs import TrialRuns
    from orchestrator.tracking.trials import TrialBook
    from orchestrator.tracking.writer import TrackingWriter, replay

    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    grid = settle_local_mode(grid, address)
    grid, teacher = pseudo_teacher(grid)
    check_storage(grid.layout.root)  # a missing bucket, refused keys, a full disk: said now, not by every trial
    print(f"preparing data ({grid.data.source}: {grid.data.root}) ...", flush=True)
    prepared = prepare_data(grid, teacher)  # before MLflow: bad data exits 2 having touched nothing
    tracker = Tracker(grid.tracking.uri, grid.name, grid.tracking.artifact_root)
    replay(tracker, grid.layout.journal)  # what an earlier driver left unwritten, before anything reads MLflow
    pseudo = round_note(grid, prepared, tracker.experiment_id)
    if prepared.pseudo is not None:
        print(f"Pseudo-labels: {len(prepared.pseudo)} of {len(prepared.tables.test)} test rows from ensemble run "
              f"{grid.pseudo.teacher} join every fold's training rows", flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plan = plan_trials(grid, prepared.trial_tables)
    work = sort_out(grid, plan, tracker, resume)
    if not work.to_run and grid.searcher != "optuna":
        return nothing_to_train(grid, work, tracker)
    datasets = grid_datasets(grid, prepared.tables)
    parent_id = open_parent(grid, tracker, prepared, stamp, work, resume, datasets)
    trials = trial_count(grid, work.to_run)
    print(f"{trials} trials to run ({len(work.reused)} reused from earlier runs, {len(work.continued)} continued); "
          f"MLflow experiment {grid.name!r} ({grid.tracking.uri}), parent run {parent_id}", flush=True)

    framings = {framing_for(p.config.data, p.config.train.augment) for p in work.to_run}
    if grid.searcher == "optuna":  # nothing planned: the grid's own settings (a searched image_size builds on first use)
        framings.add(framing_for(grid.data, grid.train.augment))
    warm_caches(prepared, framings - {None})
    init_ray(address, verbose, grid.layout.ray_log)
    if not verbose:
        print(f"Ray's log: {grid.layout.ray_log} (--verbose shows it here)", flush=True)
    book = TrialBook(work.to_run, axes=list(grid.search), continued=work.continued,
                     reused=[(p, work.prior[p.key]) for p in work.reused])
    writer = TrackingWriter(tracker, grid.layout.journal)  # the trials' MLflow writes, off Tune's event loop
    runs = TrialRuns(writer, parent_id, prepared.tables.classes, datasets, grid.insight.top_confusions)
    progress = Progress(trials, grid.scheduler.metric, grid.scheduler.mode, behind=writer.behind)
    callback = TrackingCallback(book, runs, PredictionTasks(predict_remote(grid.resources)), progress)
    finished, timing = False, None
    try:
        if trials:
            check_shared_paths({"tracking.storage": prepared.trial_tables.folds_path, "data.root": str(grid.data.root),
                                **{f"models[{i}].checkpoint": m.checkpoint for i, m in enumerate(grid.models) if m.checkpoint}})
            slots = trial_slots(grid)
            run_grid(grid, work, prepared, callback, stamp, slots, tracker)
            timing = callback.account.summary(slots.count), callback.account
            progress.close()  # the insight's lines go below the live line, not over it
            runs.settle(book.records.values(), writer.drain)  # the insight reads what the trials logged
            analyse_configs(grid, book, tracker, prepared.tables)
            release_ended_trials(book, grid.tracking.keep_weights)
        finished = True
    finally:
        progress.close()  # (again: a no-op when it closed above)
        callback.interrupt_open_runs()  # Tune returns normally on Ctrl-C: trials still open were interrupted
        runs.settle(book.records.values(), writer.drain)  # a second Ctrl-C here leaves the rest in the journal
        writer.close()
        interrupted = book.with_status(TrialStatus.INTERRUPTED)
        board, cost = leaderboard(book.records.values(), grid.scheduler.mode), total(r.cost for r in book.records.values())
        header, rows = summary_rows(book.records.values(), grid.scheduler.metric)
        close_parent(tracker, parent_id, grid, board, "\n".join(",".join(r) for r in [header] + rows), cost, timing,
                     TrialStatus.FINISHED if finished and not interrupted else TrialStatus.KILLED, pseudo)
    print("\n" + render(board, grid.scheduler.metric))
    reused = sum(r.reused for r in book.records.values())
    print(f"\ncost: {cost.wall_s:.0f} s of trial time, {cost.render()} over {len(book.records)} trials "
          f"(resources held x time; per config above, per trial in MLflow's cost_* metrics"
          + (f"; the {reused} reused trials count what their earlier runs cost)" if reused else ")"))
    if timing is not None:
        print("\n" + timing[0].render())
    print("\n" + disk_held(grid, tracker))
    failed = book.with_status(TrialStatus.FAILED)
    command = grid_argument()
    print(f"\ncompare runs: {ui_command(grid.tracking.uri, tracker.experiment_id)}")
    if any(r.status.ended for r in book.records.values()):  # something to ensemble
        print(f"ensemble:     python -m orchestrator.ensemble {command}")
    if failed:
        print(f"{len(failed)} trial(s) FAILED: their MLflow runs hold {RunFiles.ERROR}", file=sys.stderr)
    if interrupted:  # Tune returns normally on Ctrl-C, with trials still open
        print(f"interrupted: {len(interrupted)} trial(s) did not end; `python -m orchestrator.run {command} --resume` "
              f"continues them from their last checkpoints", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ERROR if failed else EXIT_OK


def release_ended_trials(book: Any, keep_weights: bool) -> None:
    """Trials that ended in this run have their predictions and best weights in MLflow (the writer has drained)
    and the insight is done: their storage goes, or keeps only the best weights (`tracking.keep_weights`)."""
    from orchestrator.train.session import release_ended

    freed = 0
    for record in book.records.values():
        if record.status.ended and record.predictions and record.best_epoch and not record.reused:
            cfg = record.planned.config
            freed += release_ended(cfg.layout.trial_dir(cfg.trial_key), record.best_epoch, keep_weights)
    if freed:
        what = "other checkpoints and optimizer state (each keeps its best weights)" if keep_weights else \
            "checkpoints (their best weights are in their MLflow runs)"
        print(f"storage: {freed / 1e6:.0f} MB of ended trials' {what} removed", flush=True)


def disk_held(grid: GridConfig, tracker: Any) -> str:
    """What the grid holds on disk: its storage, its MLflow artifacts (when they are local), this machine's cache."""
    from pathlib import Path
    from urllib.parse import urlparse

    from orchestrator.data.cache import cache_dir
    from orchestrator.storage import tree_bytes, without_query

    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0

    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    artifacts = (f"{size(Path(urlparse(location).path)) / 1e6:.0f} MB in {location}" if location.startswith(("file:", "/"))
                 else f"on the tracking server ({location})")
    return (f"disk: storage {tree_bytes(grid.layout.root) / 1e6:.0f} MB in {without_query(grid.layout.root)}; MLflow "
            f"artifacts {artifacts}; image cache {size(cache_dir()) / 1e6:.0f} MB in {cache_dir()} (all grids)")


def nothing_to_train(grid: GridConfig, work: Any, tracker: Any) -> int:
    """Every planned trial ended in an earlier run: say so and show the leaderboard from MLflow, without starting
    Ray or adding a parent run (the last one stays the grid's)."""
    from orchestrator.tracking.leaderboard import leaderboard, render
    from orchestrator.tracking.mlflow_store import ui_command
    from orchestrator.tracking.trials import TrialBook

    book = TrialBook([], axes=list(grid.search), reused=[(p, work.prior[p.key]) for p in work.reused])
    print(f"nothing to train: all {len(work.reused)} trials of this grid ended in earlier runs and are reused "
          f"(add a model, a fold or a search value to train more)")
    print("\n" + render(leaderboard(book.records.values(), grid.scheduler.mode), grid.scheduler.metric))
    print(f"\ncompare runs: {ui_command(grid.tracking.uri, tracker.experiment_id)}")
    print(f"ensemble:     python -m orchestrator.ensemble {grid_argument()}")
    return EXIT_OK


def grid_argument() -> str:
    """The grid file as the user named it, for the commands the run suggests."""
    return " ".join(sys.argv[1:2]) or "grid.yaml"


def run_grid(grid: GridConfig, work: Any, prepared: Any, callback: Any, stamp: str, slots: Any, tracker: Any) -> None:
    """The Tune run; a full storage (a trial said so, or Tune's own state could not be written) is OutOfSpace."""
    from orchestrator.errors import OutOfSpace
    from orchestrator.search.preflight import no_space_on_storage
    from orchestrator.search.runner import run_tuner
    from orchestrator.storage import is_disk_full

    try:
        run_tuner(grid, work.to_run, prepared.trial_tables, callback, stamp, slots, work.seeds(tracker, grid))
    except Exception as err:
        if not (callback.out_of_space or is_disk_full(err)):
            raise
        callback.out_of_space = callback.out_of_space or str(err)
    if callback.out_of_space:
        raise OutOfSpace(no_space_on_storage(grid.layout.root, slots.count))


def pseudo_teacher(grid: GridConfig) -> tuple[GridConfig, Any]:
    """A pseudo round's teacher resolved to its run id (`latest` would move), and its test probabilities; else None."""
    from orchestrator.tracking.history import teacher_predictions
    from orchestrator.tracking.mlflow_store import Tracker

    if grid.pseudo is None:
        return grid, None
    run_id, probs = teacher_predictions(Tracker(grid.tracking.uri, grid.name, grid.tracking.artifact_root), grid.pseudo.teacher)
    return grid.model_copy(update={"pseudo": grid.pseudo.model_copy(update={"teacher": run_id})}), probs


def analyse_configs(grid: GridConfig, book, tracker, tables) -> None:
    """Per-class tables, mistakes, galleries and Grad-CAM of the configs trained here (tracking/config_insight.py)."""
    from orchestrator.search.runner import explain_remote
    from orchestrator.tracking.config_insight import ConfigInsight
    from orchestrator.tracking.leaderboard import leaderboard

    if any(r.status.open and r.run_id for r in book.records.values()):
        return  # Ctrl-C: Tune returned with trials still open; the insight can wait for --resume
    start = time.monotonic()
    ranked = list(leaderboard(book.records.values(), grid.scheduler.mode)["config_id"])
    print(f"insight: per-class tables, mistakes and galleries of {len(ranked)} config(s), Grad-CAM of the best "
          f"{min(grid.insight.gradcam_configs, len(ranked))} ...", flush=True)
    explain = explain_remote(grid.resources) if grid.insight.gradcam_configs else None
    insight = ConfigInsight(tracker, tables.classes, tables.train, grid.insight, explain)
    try:
        notes = insight.run(list(book.records.values()), ranked, grid.scheduler.mode)
    except Exception as err:  # noqa: BLE001 - a view on the results never fails the grid that made them
        notes = [f"stopped: {type(err).__name__}: {err}"]
    for note in notes:
        print(f"insight: {note}", flush=True)
    print(f"insight: done in {time.monotonic() - start:.0f} s (under each config's runs: insight/)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = load_grid(args.grid, [parse_override(s) for s in args.set])
    check_libraries(grid, args.grid)
    if args.pseudo:  # not a --set: a run id is text, and YAML would read some as numbers
        rule = grid.pseudo.model_dump() if grid.pseudo else {}
        grid = grid.model_copy(update={"pseudo": PseudoConfig.model_validate({**rule, "teacher": args.pseudo})})
    return dry_run(grid) if args.dry_run else run(grid, args.address, args.verbose, args.resume)


if __name__ == "__main__":
    sys.exit(main_guard(main))
