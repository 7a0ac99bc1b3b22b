"""A multi-label competition end to end: several drawings per image, their classes as tags, from folds to
thresholds to the submission (with TTA, MixUp and a refit on the way)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import mlflow_runs, run_cli, write_grid


def test_multilabel_grid_ensemble_submission_and_predict(tmp_path, multilabel_root, report_figure):
    from mlflow.tracking import MlflowClient

    grid = {"name": "tags", "seed": 5,
            "data": {"source": "csv", "root": str(multilabel_root), "task": "multilabel", "image_size": 56,
                     "folds": {"n_splits": 3}},
            "models": [{"name": "test_resnet"}],
            "train": {"epochs": 2, "batch_size": 32, "mix": {"mixup_alpha": 0.2}},
            "scheduler": {"kind": "fifo"}, "tta": {"hflip": True},
            "resources": {"max_concurrent_trials": 2}, "ensemble": {"method": "auto", "refit": "best"},
            "insight": {"gradcam_configs": 1, "gallery": 4}}
    grid_file = write_grid(tmp_path, grid)
    run = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "mean val_f1_samples" in run.stdout  # the default metric of a multilabel task
    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0, ensemble.stderr
    assert "tag thresholds:" in ensemble.stdout and "by cross-validated OOF val_f1_samples" in ensemble.stdout

    classes = sorted({t for tags in pd.read_csv(multilabel_root / "train.csv")["tags"] for t in tags.split()})
    sample = pd.read_csv(multilabel_root / "sample_submission.csv")
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert submission.columns.tolist() == ["image_id", "tags"]
    assert submission["image_id"].tolist() == sample["image_id"].tolist()  # the sample's row order
    called = submission["tags"].str.split(" ")
    assert all(len(tags) >= 1 and set(tags) <= set(classes) for tags in called)  # tag names, at least one each

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = mlflow_runs(uri, "tags")
    trial = next(r for r in runs if r.data.tags["orchestrator.role"] == "trial" and r.data.tags["fold"] == "0")
    assert {"val_f1_samples", "val_f2", "val_map", "val_auc", "val_loss", "oof_f1_samples_tta"} <= set(trial.data.metrics)
    client = MlflowClient(uri)
    insight = {a.path for a in client.list_artifacts(trial.info.run_id, "insight")}
    assert {"insight/per_class.json", "insight/mistakes.txt", "insight/gallery.png"} <= insight
    page = Path(client.download_artifacts(trial.info.run_id, "insight/mistakes.txt", str(tmp_path))).read_text()
    assert "tags most often missed" in page and "tags most often added" in page
    assert any(r.data.tags.get("refit") == "true" for r in runs)
    ensemble_run = next(r for r in runs if r.data.tags["orchestrator.role"] == "ensemble")
    thresholds = json.loads(Path(client.download_artifacts(ensemble_run.info.run_id, "thresholds.json", str(tmp_path))).read_text())
    assert list(thresholds) == classes
    metrics = ensemble_run.data.metrics
    assert {"holdout_f1_samples", "holdout_f2", "holdout_map", "thresholds_cv_fixed"} <= set(metrics)

    predicted = run_cli("orchestrator.predict", str(grid_file), str(multilabel_root), "--format", "submission",
                        "--output", "predicted.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "predicted.csv"), submission)
    rows = run_cli("orchestrator.predict", str(grid_file), str(multilabel_root / "test_images"), "--output", "rows.csv",
                   cwd=tmp_path)
    assert rows.returncode == 0
    served = pd.read_csv(tmp_path / "rows.csv")
    assert "tags" in served.columns and served["top1_prob"].between(0, 1).all()
    report_figure(f"multilabel (quickdraw10, 480 images of 1-3 drawings): held-out F1 per image "
                  f"{metrics['holdout_f1_samples']:.4f}, F2 {metrics['holdout_f2']:.4f}, mAP {metrics['holdout_map']:.4f}")
