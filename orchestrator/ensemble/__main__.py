"""`python -m orchestrator.ensemble grid.yaml`: best runs -> OOF-fitted weights -> submission.

Reads the grid's finished trials from MLflow, averages each config's fold models
on the test set, fits member weights on the out-of-fold predictions, prints the
ensemble's OOF score beside each member's, writes the submission and logs an
ensemble run (members, weights, scores, correlation heatmap, submission).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.blend import shift
from orchestrator.board import read_csv, render
from orchestrator.cli import EXIT_OK, main_guard, parse_override
from orchestrator.config import load_grid
from orchestrator.console import quiet_libraries
from orchestrator.data.submission import SubmissionFormat
from orchestrator.ensemble.fit import EnsembleResult, fit_members, served_probabilities
from orchestrator.ensemble.members import load_members, use_refits
from orchestrator.errors import InputError
from orchestrator.layout import RunFiles
from orchestrator.metrics import METRICS, log_loss
from orchestrator.protocol import TrialStatus
from orchestrator.render import render_table
from orchestrator.scoring import fast_macro_f1
from orchestrator.storage import read_parquet
from orchestrator.tracking.class_report import ClassReport
from orchestrator.tracking.history import latest_grid_run
from orchestrator.tracking.mlflow_store import Tracker, ui_command
from orchestrator.tracking.plots import correlation_figure
from orchestrator.tracking.tag_report import TagReport


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="the grid.yaml that was run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a grid key")
    parser.add_argument("--verbose", action="store_true", help="MLflow's INFO lines too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries(args.verbose)
    grid = load_grid(args.grid, [parse_override(s) for s in args.set])
    tracker = Tracker(grid.tracking.uri, grid.name, grid.tracking.artifact_root, create=False)
    members, skipped = load_members(tracker, grid.data.folds.folds_to_train())
    for line in skipped:
        print(f"skipped {line}")
    if not members:
        raise InputError(f"no finished trials with predictions for every fold in MLflow experiment {grid.name!r} "
                         f"({grid.tracking.uri}); run `python -m orchestrator.run {args.grid}` first")
    result = fit_members(members, grid.scheduler.metric, grid.ensemble)
    say(result, grid.scheduler.metric)
    refits = _refits(result, grid.ensemble)

    grid_run = latest_grid_run(tracker)
    classes = json.loads(tracker.load_text(grid_run.info.run_id, RunFiles.CLASSES))
    run_id = tracker.start_run("ensemble", "ensemble", tags={"method": result.fit.method})
    log_run(tracker, run_id, grid, result, classes)
    if refits:
        tracker.log_text(run_id, "\n".join(refits), "refits.txt")
    fmt = _submission_format(grid, classes, members[0].test["image_path"]) if members[0].test is not None else None
    output = _submission(grid, tracker, run_id, result, classes, fmt)
    published = _publish(grid, tracker, run_id, result, classes, fmt)  # after the submission: a failure here keeps it
    tracker.end_run(run_id, TrialStatus.FINISHED.mlflow_status)
    fit, metric = result.fit, grid.scheduler.metric
    _update_grid_run(tracker, grid, grid_run, {m.config_id: float(w) for m, w in zip(result.chosen, fit.weights)},
                     f"**Ensemble** ({fit.method}, run `{run_id}`): {_scores_text(result, metric)} (best member "
                     f"{METRICS[metric].shown(result.scores[0]):.4f}); submission `{output or 'none (no test set)'}`; model "
                     f"`{published.registered or published.model_uri}`." + "".join(f"\n\nRefit {r}" for r in refits))
    print(f"ensemble run {run_id}; compare runs: {ui_command(grid.tracking.uri, tracker.experiment_id)}")
    print(f"model: {published.registered or published.model_uri}; predict new images: python -m orchestrator.predict "
          f"{args.grid} IMAGES --output preds.csv")
    return EXIT_OK


def say(result: EnsembleResult, metric: str) -> None:
    """The members' table, the methods compared (by the score `auto` chose by), the ensemble's scores, the offsets'
    verdict."""
    fit, chosen, shown = result.fit, result.chosen, METRICS[metric].shown
    table = [[m.config_id, m.model, f"{shown(s):.4f}", f"{w:.3f}"] for m, s, w in zip(chosen, result.scores, fit.weights)]
    print(render_table(["config_id", "model", f"OOF {metric}", "weight"], table))
    if len(fit.tried) > 1:
        cv, why = fit.tried_cv, "" if fit.tried_cv else " (fewer than 2 folds: nothing to hold out)"
        scores = [f"{k} {shown(cv[k]):.4f} ({shown(v):.4f} in-sample)" if cv else f"{k} {shown(v):.4f}"
                  for k, v in fit.tried.items()]
        print(f"methods by {fit.chosen_by} OOF {metric}{why}: {', '.join(scores)} -> {fit.method}")
    print(f"\nensemble ({fit.method}, {int((fit.weights > 0).sum())} of {len(chosen)} members): "
          f"{_scores_text(result, metric)} (best member {METRICS[metric].shown(result.scores[0]):.4f}, {len(result.rows)} "
          f"OOF rows)")
    if result.tuning is not None:
        print(result.tuning.summary())
    if result.thresholds is not None:
        print(result.thresholds.summary())


def _refits(result: EnsembleResult, cfg) -> list[str]:
    """Give the weighted members' refit models their shares (members.use_refits) and say what each got, and why."""
    if cfg.refit == "none":  # refit runs of an earlier setting stay out: the grid says none
        return []
    lines = use_refits([m for m, w in zip(result.chosen, result.weights) if w > 0], cfg.refit_share)
    for line in lines:
        print(f"refit {line}")
    if not lines:
        print(f"refit: no weighted member has a refit run yet (`python -m orchestrator.run` trains them with "
              f"ensemble.refit: {cfg.refit}); the submission is the fold models'")
    return lines


def _scores_text(result: EnsembleResult, metric: str) -> str:
    """The ensemble's OOF score on the rows its weights were fitted on, beside the cross-validated one (which
    estimates the submission's quality) or why there is none."""
    fit, shown = result.fit, METRICS[metric].shown
    cv = ("not cross-validated (fewer than 2 folds)" if fit.cv_score is None
          else f"{shown(fit.cv_score):.4f} cross-validated over {len(np.unique(result.folds))} folds")
    return f"OOF {metric} {shown(fit.score):.4f} fitted on these rows, {cv}"


def log_run(tracker: Tracker, run_id: str, grid, result: EnsembleResult, classes: list[str]) -> None:
    """The ensemble run's class report, params, scores, weights, offsets and member correlation."""
    fit, chosen, metric, cfg = result.fit, result.chosen, grid.scheduler.metric, grid.ensemble
    shown = METRICS[metric].shown  # MLflow holds the competition's numbers (a log loss as a positive loss)
    title = f"ensemble of {len(chosen)} configs, OOF ({len(result.rows)} rows)"
    if result.multilabel:  # the per-tag table at the tuned thresholds
        probs = served_probabilities(result.oofs, fit, None)
        TagReport.of(result.y, probs, classes, result.thresholds.values, title, "ensemble").log(tracker, run_id)
        tracker.log_text(run_id, json.dumps(dict(zip(classes, map(float, result.thresholds.values))), indent=2),
                         RunFiles.THRESHOLDS)
    else:
        ClassReport.of(result.y, shift(fit.oof, result.offsets).argmax(1), classes, grid.insight.top_confusions, title,
                       "ensemble").log(tracker, run_id)
    tracker.log_params(run_id, {"members": ",".join(m.config_id for m in chosen), "method": fit.method,
                                "weights": json.dumps([round(float(w), 4) for w in fit.weights]), "top_k": str(cfg.top_k)})
    cv = {} if fit.cv_score is None else {f"ensemble_oof_{metric}_cv": shown(fit.cv_score)}
    tracker.log_metrics(run_id, {f"ensemble_oof_{metric}": shown(fit.score), **cv,
                                 f"best_member_oof_{metric}": shown(result.scores[0]),
                                 **{f"method_oof_{k}": shown(v) for k, v in fit.tried.items()},
                                 **{f"method_cv_{k}": shown(v) for k, v in fit.tried_cv.items()}, **_tuning_metrics(result.tuning, result.thresholds)},
                        step=0)
    tracker.log_text(run_id, json.dumps({m.config_id: float(w) for m, w in zip(chosen, fit.weights)}, indent=2), "weights.json")
    if result.offsets is not None:
        tracker.log_text(run_id, json.dumps(dict(zip(classes, map(float, result.offsets))), indent=2), RunFiles.F1_OFFSETS)
    if len(chosen) > 1:
        flat = np.stack([p.ravel() for p in result.oofs])
        tracker.log_figure(run_id, correlation_figure([m.config_id for m in chosen], np.corrcoef(flat)), "member_correlation.png")


def _tuning_metrics(tuning, thresholds) -> dict[str, float]:
    if thresholds is not None:
        return {"thresholds_fitted": thresholds.fitted, **{f"thresholds_cv_{k}": v for k, v in thresholds.cv.items()}}
    if tuning is None:
        return {}
    return {"oof_f1_before_offsets": tuning.before, "oof_f1_offsets_cv": tuning.cv_after,
            "oof_f1_offsets_fitted": tuning.fitted_after, "f1_offsets_kept": float(tuning.offsets is not None)}


def _say_replaced(output: Path, tracker, run_id: str) -> None:
    """A submission already at `output` is replaced: say so, and where a copy of it is kept (the ensemble run that
    wrote it logged one; a file from elsewhere is moved aside to <name>.previous<suffix>)."""
    if not output.exists():
        return
    earlier = [r for r in tracker.runs("ensemble") if r.info.run_id != run_id]
    if earlier:
        print(f"replacing {output}: the previous one is kept in ensemble run {earlier[0].info.run_id} "
              f"(its artifacts: {output.name})")
        return
    kept = output.with_name(f"{output.stem}.previous{output.suffix}")
    output.replace(kept)
    print(f"replacing {output}: no ensemble run of this grid wrote it, so it is kept as {kept}")


def _submission(grid, tracker, run_id: str, result: EnsembleResult, classes: list[str],
                fmt: SubmissionFormat | None) -> Path | None:
    """Write (and log) the submission and the blended test probabilities; None when the source has no test set.

    `fmt`: the competition's own shape (the csv source); else the source's writer."""
    from orchestrator.data.sources import SOURCES  # the sources' loaders: only a submission needs them

    chosen = result.chosen
    if any(m.test is None for m in chosen):
        print("no test predictions (the data source has no test set): no submission written")
        return None
    predicted, probs = result.test_predictions(), result.test_probabilities()
    test_table = chosen[0].test[["row_id", "image_path"]].rename(columns={"image_path": "rel_path"})
    if fmt is not None:
        order = np.argsort(test_table["row_id"].to_numpy(), kind="stable")  # the test CSV's row order
        submission = fmt.write(test_table["rel_path"].to_numpy()[order], probs[order], predicted[order], classes)
    else:
        submission = SOURCES[grid.data.source].submission(test_table, predicted, classes)
    output = Path(grid.ensemble.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    _say_replaced(output, tracker, run_id)
    submission.to_csv(output, index=False)
    with tempfile.TemporaryDirectory() as folder:
        submission.to_csv(Path(folder) / output.name, index=False)
        tracker.log_file(run_id, Path(folder) / output.name)
    test_probs = chosen[0].test[["row_id", "image_path"]].reset_index(drop=True)  # pseudo-labels read these
    test_probs = test_probs.join(pd.DataFrame(probs, columns=[f"prob_{i}" for i in range(probs.shape[1])]))
    tracker.log_frames(run_id, {RunFiles.ENSEMBLE_TEST.removesuffix(".parquet"): test_probs})
    print(f"submission: {output} ({len(submission)} rows, columns {', '.join(map(str, submission.columns))})")
    holdout = _holdout_scores(grid, test_table, predicted, probs, classes)
    if holdout:
        tracker.log_metrics(run_id, holdout, step=0)
        shown = ", ".join(f"{k.removeprefix('holdout_')} {v:.4f}" for k, v in holdout.items())
        print(f"held-out test scores: {shown} (labels from {grid.data.root}/test_labels.csv)")
    return output


def _submission_format(grid, classes: list[str], test_ids) -> SubmissionFormat | None:
    """The csv source's submission format as the grid's test CSV says now (None for the other sources); InputError
    when its rows are not the ones the trials predicted (the test CSV changed after the grid ran)."""
    from orchestrator.data.csv_source import submission_now

    found = submission_now(grid.data, classes) if grid.data.source == "csv" else None
    if found is None:
        return None
    fmt, ids = found
    if sorted(map(str, ids)) != sorted(map(str, test_ids)):
        raise InputError(f"data.test_csv: {fmt.test_csv} holds other rows than the test rows the trials predicted; "
                         f"run `python -m orchestrator.run` on this grid first (its trials predict the new rows)")
    return fmt


def _publish(grid, tracker, run_id: str, result: EnsembleResult, classes: list[str], fmt: SubmissionFormat | None):
    """The ensemble as an MLflow model on its run (registered under the grid's name unless `ensemble.register` is off)."""
    from orchestrator.serve.bundle import write_bundle  # torch (the bundle's loader), only when publishing
    from orchestrator.serve.publish import publish

    cfg, fit, offsets, chosen = grid.ensemble, result.fit, result.offsets, result.chosen
    example = read_parquet(grid.layout.folds_table)["image_path"].iloc[0]
    with tempfile.TemporaryDirectory() as folder:
        served_offsets = None if fit.method == "rank" else offsets  # rank's were fitted on ranks (see served_probabilities)
        spec = write_bundle(tracker, chosen, fit.weights, classes, fit.method, Path(folder), served_offsets, fmt,
                            result.thresholds)
        print(f"logging the ensemble as an MLflow model ({sum(len(m.folds) for m in spec.members)} models) ...",
              flush=True)
        return publish(grid.tracking.uri, run_id, Path(folder), example, grid.name if cfg.register_model else None, cfg.alias)


def _update_grid_run(tracker, grid, parent, weights: dict[str, float], line: str) -> None:
    """The grid's latest parent run: its leaderboard gets the members' weights, its description the ensemble."""
    try:
        board = read_csv(tracker.load_text(parent.info.run_id, RunFiles.LEADERBOARD))
        board["weight"] = board["config_id"].map(weights)
        tracker.log_text(parent.info.run_id, board.to_csv(index=False), RunFiles.LEADERBOARD)
        note = parent.data.tags.get("mlflow.note.content", "").split("\n\n**Ensemble**")[0]
        tracker.describe(parent.info.run_id, f"{note}\n\n{line}")
    except Exception as err:  # noqa: BLE001 - a grid run by an older version has none; the ensemble itself is done
        print(f"the grid run's leaderboard was not updated: {err}")
        return
    print("\n" + render(board, grid.scheduler.metric))


def _holdout_scores(grid, test_table, predicted: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Accuracy, macro F1 and log loss against `test_labels.csv`, which exported fixtures (demo, quickdraw) keep beside
    the test CSV: image_path,target (sketch_csv) or the csv source's id and label columns (class names)."""
    labels_file = Path(grid.data.root) / "test_labels.csv"
    if not labels_file.is_file():
        return {}
    labels = pd.read_csv(labels_file, dtype=str, keep_default_na=False)
    if predicted.ndim == 2:  # tags: id, tag names separated as the training labels are
        return _holdout_tags(grid, labels, test_table, predicted, probs, classes)
    if {"image_path", "target"} <= set(labels.columns):
        truth = labels.set_index("image_path")["target"].astype(int)
    else:  # id, label: the csv source's names
        index = {name: k for k, name in enumerate(classes)}
        truth = labels.set_index(labels.columns[0])[labels.columns[1]].map(lambda v: index.get(str(v).strip(), -1))
    y = truth.reindex(test_table["rel_path"].astype(str)).to_numpy()
    if np.isnan(y.astype(float)).any() or (y < 0).any():
        print(f"{labels_file}: not every test row has a known label; no held-out scores")
        return {}
    y = y.astype(int)
    return {"holdout_accuracy": float((y == predicted).mean()),
            "holdout_f1": fast_macro_f1(predicted, y, max(len(classes), int(max(y.max(), predicted.max())) + 1)),
            "holdout_logloss": log_loss(probs, y)}


def _holdout_tags(grid, labels: pd.DataFrame, test_table, called: np.ndarray, probs: np.ndarray,
                  classes: list[str]) -> dict[str, float]:
    """A multilabel task's held-out scores: per-image F1 and F2 of the called tags, mAP and log loss of the
    probabilities."""
    from orchestrator.data.tables import hot_of_names
    from orchestrator.metrics import f1_samples, f2_samples, mean_average_precision

    truth = labels.set_index(labels.columns[0])[labels.columns[1]].reindex(test_table["rel_path"].astype(str))
    if truth.isna().any():
        return {}
    hot = hot_of_names(truth.tolist(), classes, grid.data.label_separator).astype(np.float64)
    decided = called.astype(np.float64)
    return {"holdout_f1_samples": f1_samples(decided, hot), "holdout_f2": f2_samples(decided, hot),
            "holdout_map": mean_average_precision(probs, hot), "holdout_logloss": log_loss(probs, hot)}


if __name__ == "__main__":
    sys.exit(main_guard(main))
