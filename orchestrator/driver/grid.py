"""One invocation of a grid on the driver, as its phases.

    prepare    the pseudo round's teacher, the storage probed, the data checked and written once, MLflow opened
               (and what an earlier driver left in the journal written first)
    plan       folds x models x search values, sorted out against what MLflow holds (reused, continued, trained)
    open       the grid's parent run, the image caches, Ray, the trial book, the writer, the Tune callback
    tune       the Tune run over the trials to train
    insight    per config: per-class tables, mistakes, galleries, Grad-CAM
    refit      `ensemble.refit`: the chosen configs trained again on every row, a second Tune run (driver/refit.py)
    release    ended trials give their storage back (MLflow holds their weights)
    summarise  the parent run closed; leaderboard, cost, time, disk and the next commands printed

`GridRun.run` runs them in order; a Ctrl-C or a failure in `tune` still summarises what ended.
`dry_run` is the plan phase alone, without writing anything.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.board import render
from orchestrator.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from orchestrator.config import GridConfig, TrialTables
from orchestrator.data.cache import cache_dir, framing_for
from orchestrator.data.folds import assign_folds
from orchestrator.data.prepare import data_fingerprint, load_checked, prepare_data, warm_caches
from orchestrator.data.sources import SOURCES
from orchestrator.driver.grid_run import close_parent, grid_datasets, open_parent, round_note
from orchestrator.driver.leaderboard import leaderboard
from orchestrator.driver.predictions import PredictionTasks
from orchestrator.driver.progress import Progress, summary_rows
from orchestrator.driver.refit import plan_refits, refit_grid, sort_out_refits
from orchestrator.driver.resume import Work, retire, sort_out, start_afresh
from orchestrator.driver.trial_runs import TrialRuns
from orchestrator.driver.trials import TrialBook
from orchestrator.errors import InputError, OutOfSpace
from orchestrator.layout import RunFiles
from orchestrator.protocol import TrialStatus
from orchestrator.search.plan import format_plan, plan_trials, trial_count
from orchestrator.search.preflight import check_shared_paths, check_storage, no_space_on_storage
from orchestrator.search.runner import explain_remote, init_ray, predict_remote, run_tuner, settle_local_mode, trial_slots
from orchestrator.storage import is_disk_full, tree_bytes, without_query
from orchestrator.tracking.cost import total
from orchestrator.tracking.history import prior_trials, teacher_predictions
from orchestrator.tracking.mlflow_store import Tracker, ui_command
from orchestrator.tracking.writer import TrackingWriter, replay

# MLflow's HTTP client retries a request that gets no answer for about 2 minutes by default; the
# driver's writer retries on its own (tracking/writer.py), so a short client retry (1 + 2 + 4 s)
# lets it see an outage, and a server that is back, within seconds. Users can set their own.
MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class GridRun:
    """The phases of one `python -m orchestrator.run` (see the module's docstring); each sets what the next reads."""

    def __init__(self, grid: GridConfig, address: str | None, verbose: bool, resume: bool) -> None:
        self.grid, self.address, self.verbose, self.resume = grid, address, verbose, resume
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.slots = None  # trials at once: asked of the cluster at the first Tune run
        self.refit_work = None  # (Work, stale refits) sorted out by refits_waiting, when every fold trial had ended
        # what `open` has opened so far (close ends whatever it finds, from the parent run on)
        self.parent_id = self.book = self.writer = self.runs = self.progress = self.callback = None

    def run(self) -> int:
        for key, value in MLFLOW_ENV.items():
            os.environ.setdefault(key, value)
        self.prepare()
        self.plan()
        if not self.work.to_run and self.grid.searcher != "optuna" and not self.refits_waiting():
            return self.nothing_to_train()
        finished, timing = False, None
        try:  # one exit path from the parent run on: Ray failing to start, a Ctrl-C anywhere, all end in close
            self.open()
            if self.trials:
                timing = self.tune()
                self.progress.close()  # the insight's lines go below the live line, not over it
                self.runs.settle(self.book.records.values(), self.writer.drain)  # the insight reads what trials logged
                self.insight()
            timing = self.refit() or timing
            self.release()
            finished = True
        finally:
            self.close(finished, timing)
        return self.summarise()

    # ------------------------------------------------------------------ phases

    def prepare(self) -> None:
        grid = settle_local_mode(self.grid, self.address)
        grid, teacher = pseudo_teacher(grid)
        check_storage(grid.layout.root)  # a missing bucket, refused keys, a full disk: said now, not by every trial
        print(f"preparing data ({grid.data.source}: {grid.data.root}) ...", flush=True)
        self.prepared = prepare_data(grid, teacher)  # before MLflow: bad data exits 2 having touched nothing
        self.tracker = Tracker(grid.tracking.uri, grid.name, grid.tracking.artifact_root)
        replay(self.tracker, grid.layout.journal)  # what an earlier driver left unwritten, before anything reads MLflow
        self.pseudo = round_note(grid, self.prepared, self.tracker.experiment_id)
        if self.prepared.pseudo is not None:
            print(f"Pseudo-labels: {len(self.prepared.pseudo)} of {len(self.prepared.tables.test)} test rows from "
                  f"ensemble run {grid.pseudo.teacher} join every fold's training rows", flush=True)
        self.grid = grid

    def plan(self) -> None:
        self.work: Work = sort_out(self.grid, plan_trials(self.grid, self.prepared.trial_tables), self.tracker, self.resume)
        start_afresh(self.work, self.tracker, self.resume)
        self.trials = trial_count(self.grid, self.work.to_run)

    def open(self) -> None:
        from orchestrator.driver.callback import TrackingCallback  # ray.tune: seconds a finished grid's rerun skips

        grid, work, prepared = self.grid, self.work, self.prepared
        self.datasets = grid_datasets(grid, prepared.tables)
        self.parent_id = open_parent(grid, self.tracker, prepared, self.stamp, work, self.resume, self.datasets)
        print(f"{self.trials} trials to run ({len(work.reused)} reused from earlier runs, {len(work.continued)} "
              f"continued); MLflow experiment {grid.name!r} ({grid.tracking.uri}), parent run {self.parent_id}", flush=True)
        framings = {framing_for(p.config.data, p.config.train.augment) for p in work.to_run}
        if grid.searcher == "optuna":  # nothing planned: the grid's own settings (a searched image_size builds on first use)
            framings.add(framing_for(grid.data, grid.train.augment))
        warm_caches(prepared, framings - {None})
        init_ray(self.address, self.verbose, grid.layout.ray_log)
        if not self.verbose:
            print(f"Ray's log: {grid.layout.ray_log} (--verbose shows it here)", flush=True)
        self.book = TrialBook(work.to_run, axes=list(grid.search), continued=work.continued,
                              reused=[(p, work.prior[p.key]) for p in work.reused])
        self.writer = TrackingWriter(self.tracker, grid.layout.journal)  # the trials' MLflow writes, off Tune's loop
        self.runs = TrialRuns(self.writer, self.parent_id, prepared.tables.classes, self.datasets,
                              grid.insight.top_confusions)
        self.progress = Progress(self.trials, grid.scheduler.metric, grid.scheduler.mode, behind=self.writer.behind)
        self.callback = TrackingCallback(self.book, self.runs, PredictionTasks(predict_remote(grid.resources)), self.progress)

    def tune(self) -> tuple[Any, Any]:
        """The Tune run over the fold trials; returns the time account's summary and the account."""
        return self._tune(self.grid, self.work.to_run, self.stamp, self.work.seeds(self.tracker, self.grid))

    def _tune(self, grid: GridConfig, plan: list, stamp: str, seeds: dict) -> tuple[Any, Any]:
        """One Tune run; a full storage (a trial said so, or Tune's own state could not be written) is OutOfSpace."""
        callback = self.callback
        if self.slots is None:  # once per invocation: it says what caps the trials
            check_shared_paths({"tracking.storage": self.prepared.trial_tables.folds_path, "data.root": str(grid.data.root),
                                **{f"models[{i}].checkpoint": m.checkpoint for i, m in enumerate(grid.models) if m.checkpoint}})
            self.slots = trial_slots(grid)
        try:
            run_tuner(grid, plan, self.prepared.trial_tables, callback, stamp, self.slots, seeds)
        except Exception as err:
            if not (callback.out_of_space or is_disk_full(err)):
                raise
            callback.out_of_space = callback.out_of_space or str(err)
        if callback.out_of_space:
            raise OutOfSpace(no_space_on_storage(grid.layout.root, self.slots.count))
        return callback.account.summary(self.slots.count), callback.account

    def refits_waiting(self) -> bool:
        """With every fold trial ended earlier: whether a refit `ensemble.refit` asks for has not ended yet."""
        if self.grid.ensemble.refit == "none":
            return False
        book = TrialBook([], reused=[(p, self.work.prior[p.key]) for p in self.work.reused])
        planned = plan_refits(self.grid, self.tracker, book.records.values())
        self.refit_work = sort_out_refits(self.grid, planned, self.tracker, self.resume)
        return bool(self.refit_work[0].to_run)

    def refit(self) -> tuple[Any, Any] | None:
        """`ensemble.refit`: the configs it chooses trained again on every training row (driver/refit.py), once
        every fold trial ended; the time account's summary and the account when any trained."""
        records = self.book.records.values()
        if self.grid.ensemble.refit == "none" or any(r.status.open for r in records):
            return None  # interrupted: --resume refits after the folds
        grid = refit_grid(self.grid)
        # no fold trial trained here: refits_waiting sorted the refits out already, on the same records
        work, stale = self.refit_work or sort_out_refits(self.grid, plan_refits(self.grid, self.tracker, records),
                                                          self.tracker, self.resume)
        for p in stale:
            print(f"{p.key}: its folds now find {p.config.train.epochs} epochs best, its earlier refit trained "
                  f"{work.prior[p.key].epochs}: it trains again", flush=True)
        if self.resume:  # without --resume, start_afresh retires them with the rest
            retire(stale, work, self.tracker)
        start_afresh(work, self.tracker, self.resume)
        self.book.add(work.to_run, work.continued, [(p, work.prior[p.key]) for p in work.reused])
        if not work.to_run:
            return None
        print(f"refit ({grid.ensemble.refit}): {len(work.to_run)} config(s) train again on all "
              f"{len(self.prepared.tables.train)} training rows: "
              + ", ".join(f"{p.config.config_id} {p.config.model.name} for {p.config.train.epochs} epochs" for p in work.to_run),
              flush=True)
        self.progress = self.callback.progress = Progress(len(work.to_run), grid.scheduler.metric, grid.scheduler.mode,
                                                          behind=self.writer.behind)
        timing = self._tune(grid, work.to_run, f"{self.stamp}-refit", {})
        self.progress.close()
        self.runs.settle(self.book.records.values(), self.writer.drain)
        return timing

    def insight(self) -> None:
        """Per-class tables, mistakes, galleries and Grad-CAM of the configs trained here (config_insight.py)."""
        from orchestrator.driver.config_insight import ConfigInsight

        grid, records = self.grid, [r for r in self.book.records.values() if not r.planned.config.refit]
        if any(r.status.open and r.run_id for r in records):
            return  # Ctrl-C: Tune returned with trials still open; the insight can wait for --resume
        start = time.monotonic()
        ranked = list(leaderboard(records, grid.scheduler.mode)["config_id"])
        print(f"insight: per-class tables, mistakes and galleries of {len(ranked)} config(s), Grad-CAM of the best "
              f"{min(grid.insight.gradcam_configs, len(ranked))} ...", flush=True)
        explain = explain_remote(grid.resources) if grid.insight.gradcam_configs else None
        insight = ConfigInsight(self.tracker, self.prepared.tables.classes, self.prepared.tables.train, grid.insight, explain)
        try:
            notes = insight.run(records, ranked, grid.scheduler.mode)
        except Exception as err:  # noqa: BLE001 - a view on the results never fails the grid that made them
            notes = [f"stopped: {type(err).__name__}: {err}"]
        for note in notes:
            print(f"insight: {note}", flush=True)
        print(f"insight: done in {time.monotonic() - start:.0f} s (under each config's runs: insight/)", flush=True)

    def release(self) -> None:
        """Trials that ended in this run have their predictions and best weights in MLflow (the writer has drained)
        and the insight is done: their storage goes, or keeps only the best weights (`tracking.keep_weights`)."""
        from orchestrator.train.checkpoint import release_ended  # torch: only a run that trained needs it

        keep, freed = self.grid.tracking.keep_weights, 0
        for record in self.book.records.values():
            if record.status.ended and record.predictions and record.best_epoch and not record.reused:
                cfg = record.planned.config
                freed += release_ended(cfg.layout.trial_dir(cfg.trial_key), record.best_epoch, keep)
        if freed:
            what = "other checkpoints and optimizer state (each keeps its best weights)" if keep else \
                "checkpoints (their best weights are in their MLflow runs)"
            print(f"storage: {freed / 1e6:.0f} MB of ended trials' {what} removed", flush=True)

    def close(self, finished: bool, timing: Any) -> None:
        """End what the run opened, whatever happened in it and however far `open` got: open trial runs, the
        writer (its thread always stopped), the parent run (ended FINISHED, or KILLED for --resume). A Ctrl-C in
        the final drain leaves the unwritten rest in the journal, and still ends the thread and the parent run."""
        if self.parent_id is None:
            return
        try:
            if self.progress is not None:
                self.progress.close()  # (again: a no-op when it closed before the insight)
            if self.callback is not None:
                self.callback.interrupt_open_runs()  # Tune returns normally on Ctrl-C: trials still open were interrupted
            if self.writer is not None:
                self.runs.settle(self.book.records.values(), self.writer.drain)  # a 2nd Ctrl-C: the rest stays journaled
        finally:
            stopped = self.writer.close() if self.writer is not None else True
            # a writer thread still inside an MLflow call (a server that hangs) keeps its tracker: the parent run's
            # close takes a client of its own
            tracker = self.tracker if stopped else Tracker(self.grid.tracking.uri, self.grid.name,
                                                           self.grid.tracking.artifact_root)
            records = list(self.book.records.values()) if self.book is not None else []
            self.board, self.cost, self.timing = leaderboard(records, self.grid.scheduler.mode), total(r.cost for r in records), timing
            header, rows = summary_rows(records, self.grid.scheduler.metric)
            ok = finished and self.book is not None and not self.book.with_status(TrialStatus.INTERRUPTED)
            close_parent(tracker, self.parent_id, self.grid, self.board, "\n".join(",".join(r) for r in [header] + rows),
                         self.cost, timing, TrialStatus.FINISHED if ok else TrialStatus.KILLED, self.pseudo)

    def summarise(self) -> int:
        """Print the leaderboard, cost, time, disk and the next commands; the exit code."""
        grid, records = self.grid, self.book.records.values()
        print("\n" + render(self.board, grid.scheduler.metric))
        reused = sum(r.reused for r in records)
        print(f"\ncost: {self.cost.wall_s:.0f} s of trial time, {self.cost.render()} over {len(records)} trials "
              f"(resources held x time; per config above, per trial in MLflow's cost_* metrics"
              + (f"; the {reused} reused trials count what their earlier runs cost)" if reused else ")"))
        if self.timing is not None:
            print("\n" + self.timing[0].render())
        print("\n" + disk_held(grid, self.tracker))
        failed, interrupted = self.book.with_status(TrialStatus.FAILED), self.book.with_status(TrialStatus.INTERRUPTED)
        print(f"\ncompare runs: {ui_command(grid.tracking.uri, self.tracker.experiment_id)}")
        if any(r.status.ended for r in records):  # something to ensemble
            print(f"ensemble:     python -m orchestrator.ensemble {grid_argument()}")
        if failed:
            print(f"{len(failed)} trial(s) FAILED: their MLflow runs hold {RunFiles.ERROR}", file=sys.stderr)
        if interrupted:  # Tune returns normally on Ctrl-C, with trials still open
            print(f"interrupted: {len(interrupted)} trial(s) did not end; `python -m orchestrator.run {grid_argument()} "
                  f"--resume` continues them from their last checkpoints", file=sys.stderr)
            return EXIT_INTERRUPTED
        return EXIT_ERROR if failed else EXIT_OK

    def nothing_to_train(self) -> int:
        """Every planned trial ended in an earlier run: say so and show the leaderboard from MLflow, without starting
        Ray or adding a parent run (the last one stays the grid's)."""
        grid, work = self.grid, self.work
        book = TrialBook([], axes=list(grid.search), reused=[(p, work.prior[p.key]) for p in work.reused])
        if self.refit_work is not None:  # and so did every refit it asks for
            refits = self.refit_work[0]
            book.add([], reused=[(p, refits.prior[p.key]) for p in refits.reused])
        print(f"nothing to train: all {len(work.reused)} trials of this grid ended in earlier runs and are reused "
              f"(add a model, a fold or a search value to train more)")
        print("\n" + render(leaderboard(book.records.values(), grid.scheduler.mode), grid.scheduler.metric))
        print(f"\ncompare runs: {ui_command(grid.tracking.uri, self.tracker.experiment_id)}")
        print(f"ensemble:     python -m orchestrator.ensemble {grid_argument()}")
        return EXIT_OK


def dry_run(grid: GridConfig) -> int:
    """The plan phase alone: the trial table, the data checked (read-only), what MLflow would reuse; writes nothing."""
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
        if tables.test is None:
            print(f"warning: no test rows, so the ensemble will write no submission; {no_test_hint(grid)}",
                  file=sys.stderr)
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
    if grid.ensemble.refit != "none":
        which = "the best config" if grid.ensemble.refit == "best" else "every config the ensemble gives weight"
        print(f"then refit (ensemble.refit: {grid.ensemble.refit}): {which} trains again on every training row, "
              f"once its folds have ended (one trial each, chosen then)")
    if fingerprint:  # the ids are the real run's: say what MLflow already holds of them
        prior = {key: old for key, old in earlier_trials(grid).items() if key in {p.key for p in plan}}
        ended = sum(old.ended for old in prior.values())
        print(f"against MLflow ({grid.tracking.uri}): {ended} would be reused (ended earlier), {len(prior) - ended} "
              f"continued with --resume (started afresh without), {len(plan) - len(prior)} trained")
    return EXIT_OK


def no_test_hint(grid: GridConfig) -> str:
    """Where a source finds its test rows, for the warning that it found none."""
    data = grid.data
    where = {"csv": f"data.test_csv ({data.test_csv or 'null'}) with images in data.test_images ({data.test_images})",
             "sketch_csv": "test.csv and test/ in data.root", "mask": "eval/info.csv and eval/images/ in data.root",
             "image_folder": "data.test_root (a folder of test images)"}.get(data.source, "the source's test set")
    return f"the {data.source} source reads them from {where}"


def earlier_trials(grid: GridConfig) -> dict:
    """What MLflow holds of this grid's trials, read without writing anything ({} with no store or experiment yet)."""
    uri = grid.tracking.uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}  # opening it would create it
    try:
        return prior_trials(Tracker(uri, grid.name, create=False), grid.scheduler.metric)
    except InputError:
        return {}


def pseudo_teacher(grid: GridConfig) -> tuple[GridConfig, Any]:
    """A pseudo round's teacher resolved to its run id (`latest` would move), and its test probabilities; else None."""
    if grid.pseudo is None:
        return grid, None
    run_id, probs = teacher_predictions(Tracker(grid.tracking.uri, grid.name, grid.tracking.artifact_root), grid.pseudo.teacher)
    return grid.model_copy(update={"pseudo": grid.pseudo.model_copy(update={"teacher": run_id})}), probs


def disk_held(grid: GridConfig, tracker: Tracker) -> str:
    """What the grid holds on disk: its storage, its MLflow artifacts (when they are local), this machine's cache."""
    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0

    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    artifacts = (f"{size(Path(urlparse(location).path)) / 1e6:.0f} MB in {location}" if location.startswith(("file:", "/"))
                 else f"on the tracking server ({location})")
    return (f"disk: storage {tree_bytes(grid.layout.root) / 1e6:.0f} MB in {without_query(grid.layout.root)}; MLflow "
            f"artifacts {artifacts}; image cache {size(cache_dir()) / 1e6:.0f} MB in {cache_dir()} (all grids)")


def grid_argument() -> str:
    """The grid file as the user named it, for the commands the run suggests."""
    return " ".join(sys.argv[1:2]) or "grid.yaml"
