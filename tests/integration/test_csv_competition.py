"""A Kaggle-style competition end to end through the csv source: its CSV in, its exact submission file out.

Built from real sketches (quickdraw10) by export_kaggle_csv: string labels, ids without ".png", a sample
submission in a shuffled row order, and a probability variant whose class columns are not in sorted order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.conftest import mlflow_runs, run_cli, write_grid


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str})


def test_kaggle_layout_grid_ensemble_submission_and_predict(tmp_path, kaggle_root, report_figure):
    labels_root, probs_root = kaggle_root / "labels", kaggle_root / "probabilities"
    grid = {"name": "kaggle", "seed": 3,
            "data": {"source": "csv", "root": str(labels_root), "image_size": 32, "folds": {"n_splits": 3}},
            "models": [{"name": "test_resnet"}], "train": {"epochs": 1, "batch_size": 32, "augment": "sketch_light"},
            "scheduler": {"kind": "fifo", "metric": "val_logloss", "mode": "min"},
            "resources": {"max_concurrent_trials": 2}, "ensemble": {"method": "auto", "refit": "best"},
            "insight": {"gradcam_configs": 0, "gallery": 4}}
    grid_file = write_grid(tmp_path, grid)
    journal = tmp_path / "ray_results" / "kaggle" / "tracking-journal"  # an older release's write, left by a kill
    journal.mkdir(parents=True)
    (journal / "ops.jsonl").write_text('{"seq": 1, "op": "log_metrics", "args": "gASVKAAAAAAAAACMCF9fbWFpbl9flC4="}\n')
    run = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "1 journal entry in" in run.stderr and "set aside in" in run.stderr  # said, and the grid went on
    assert "log_metrics" in (tmp_path / "ray_results" / "kaggle" / "tracking-journal.set-aside.jsonl").read_text()
    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0, ensemble.stderr
    for output in (run, ensemble):  # to a pipe, as to a log file: whole lines, no MLflow INFO lines
        printed = output.stdout + output.stderr
        assert "\r" not in printed and " INFO " not in printed, printed
    assert "decoding" in run.stdout  # the image cache's progress, as a start and an end line

    sample, truth = read(labels_root / "sample_submission.csv"), read(labels_root / "test_labels.csv")
    submission = read(tmp_path / "submission.csv")
    assert submission.columns.tolist() == ["image_id", "label"]
    assert submission["image_id"].tolist() == sample["image_id"].tolist()  # the sample's (shuffled) row order
    assert set(submission["label"]) <= set(truth["label"])  # class names, not indexes
    accuracy = float((submission["label"] == truth.set_index("image_id").loc[submission["image_id"], "label"].to_numpy()).mean())
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "kaggle")
    ensemble_run = next(r for r in runs if r.data.tags["orchestrator.role"] == "ensemble")
    assert ensemble_run.data.metrics["holdout_accuracy"] == accuracy and ensemble_run.data.metrics["holdout_logloss"] > 0
    trial = next(r for r in runs if r.data.tags["orchestrator.role"] == "trial" and r.data.tags["fold"] == "0")
    assert {"val_logloss", "val_auc", "val_qwk", "val_acc"} <= set(trial.data.metrics)
    assert any(r.data.tags.get("refit") == "true" for r in runs)  # refit runs on the csv source too

    # predict on the competition root writes the same file; a root without the model's test CSV is refused
    predicted = run_cli("orchestrator.predict", str(grid_file), str(labels_root), "--format", "submission",
                        "--output", "predicted.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    pd.testing.assert_frame_equal(read(tmp_path / "predicted.csv"), submission)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "train.csv").write_bytes((labels_root / "train.csv").read_bytes())
    refused = run_cli("orchestrator.predict", str(grid_file), str(bare), cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds train.csv: it looks like a competition data root" in refused.stderr
    assert "reads its test rows from sample_submission.csv and test_images/" in refused.stderr

    # the probability variant: the same rows and images (its trials are reused), one column per class
    probability_grid = write_grid(tmp_path, {**grid, "data": {**grid["data"], "root": str(probs_root)},
                                             "ensemble": {**grid["ensemble"], "output": "probabilities.csv"}}, "probs.yaml")
    rerun = run_cli("orchestrator.run", str(probability_grid), cwd=tmp_path)
    assert rerun.returncode == 0 and "nothing to train" in rerun.stdout
    assert run_cli("orchestrator.ensemble", str(probability_grid), cwd=tmp_path).returncode == 0
    sample = read(probs_root / "sample_submission.csv")
    written = read(tmp_path / "probabilities.csv")
    assert written.columns.tolist() == sample.columns.tolist() != ["image_id", *sorted(sample.columns[1:])]
    assert written["image_id"].tolist() == sample["image_id"].tolist()
    np.testing.assert_allclose(written.iloc[:, 1:].sum(axis=1), 1.0, rtol=1e-6)
    top = written.set_index("image_id").iloc[:, :].idxmax(axis=1).loc[submission["image_id"]].to_numpy()
    assert (top == submission["label"].to_numpy()).mean() > 0.95  # the same blend, argmax'd (ties aside)
    predicted = run_cli("orchestrator.predict", str(probability_grid), str(probs_root), "--format", "submission",
                        "--output", "predicted_probabilities.csv", cwd=tmp_path)
    assert predicted.returncode == 0
    np.testing.assert_allclose(read(tmp_path / "predicted_probabilities.csv").iloc[:, 1:].to_numpy(),
                               written.iloc[:, 1:].to_numpy(), atol=1e-5)
    report_figure(f"csv source (quickdraw10 Kaggle layout, 600 images): held-out accuracy {accuracy:.4f}, log loss "
                  f"{ensemble_run.data.metrics['holdout_logloss']:.4f}")
