"""A grid's ensemble as a registered MLflow model: `orchestrator.predict` and `mlflow models serve` on real images.

The whole path runs on bucket storage, as on a cloud cluster: `tracking.storage` on a real
S3 API server (moto_server), and an MLflow server (`orchestrator.tracking.server`) whose
artifacts are in a bucket on it, the endpoint given the standard way (AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pandas as pd
import pytest

from tests.conftest import free_port, quickdraw_grid, run_cli, wait_for_http, write_grid

NAME = "predict-e2e"


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def mlflow_on_s3(s3, tmp_path, monkeypatch):
    """`python -m orchestrator.tracking.server start` with its artifacts in a bucket; its URI."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    bucket = s3.bucket("mlflow-artifacts")
    port, state = free_port(), tmp_path / "mlflow-server"
    started = run_cli("orchestrator.tracking.server", "start", "--state-dir", str(state), "--port", str(port),
                      "--artifacts-destination", f"s3://{bucket}/artifacts", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        run_cli("orchestrator.tracking.server", "stop", "--state-dir", str(state), cwd=tmp_path)


def test_the_registered_ensemble_predicts_new_images_and_serves_them(tmp_path, quickdraw_root, report_figure, s3,
                                                                     mlflow_on_s3):
    bucket = s3.bucket("grids")
    grid = quickdraw_grid(quickdraw_root, NAME, models=[{"name": "test_vit"}],
                          scheduler={"kind": "fifo", "metric": "val_acc", "mode": "max"},
                          tracking={"uri": mlflow_on_s3, "storage": f"s3://{bucket}/runs", "keep_weights": True})
    grid["data"]["folds"] = {"kind": "stratified", "n_splits": 2}
    grid["train"]["epochs"] = 2
    grid["ensemble"]["refit"] = "best"  # the served model and the submission blend the refit with the fold models
    grid_file = write_grid(tmp_path, grid)
    assert run_cli("orchestrator.run", str(grid_file), cwd=tmp_path).returncode == 0
    stored = s3.keys(bucket, f"runs/{NAME}/")
    assert f"runs/{NAME}/data/folds.parquet" in stored
    # keep_weights: each of the 3 ended trials (2 folds, the refit) keeps its best checkpoint, committed (manifest;
    # no .partial copies), without its optimizer state
    assert sum(k.endswith("/MANIFEST.json") for k in stored) == 3, stored
    assert not any(k.endswith("/train_state.pt") for k in stored)
    assert not any(".partial" in k for k in stored)
    assert any(k.endswith("/checkpoint/model.pt") for k in s3.keys("mlflow-artifacts"))  # the server's artifacts
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()
    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0 and f"model: models:/{NAME}@champion" in ensemble.stdout
    assert "refit model takes 0.5 of" in ensemble.stdout and "(3 models)" in ensemble.stdout, ensemble.stdout

    # the competition's own test set through the registered model: the submission the ensemble job wrote
    again = run_cli("orchestrator.predict", str(grid_file), str(quickdraw_root), "--format", "submission",
                    "--output", "again.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert pd.read_csv(tmp_path / "again.csv").equals(submission)

    # a folder of images: one row per image, the same classes
    folder = run_cli("orchestrator.predict", str(grid_file), str(quickdraw_root / "test"), "--output", "preds.csv",
                     "--topk", "3", cwd=tmp_path)
    assert folder.returncode == 0, folder.stderr
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == len(submission) == 300 and "top3_prob" in preds.columns and "top4_class" not in preds.columns
    joined = submission.merge(preds, on="image_path", suffixes=("", "_pred"))
    assert len(joined) == 300 and (joined["target"] == joined["target_pred"]).all()
    speed = folder.stderr.strip().splitlines()[-1]

    # one image file; an image_folder-style submission of a test folder
    first = quickdraw_root / "test" / preds["image_path"][0]
    one = run_cli("orchestrator.predict", str(grid_file), str(first), "--output", "one.csv", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert pd.read_csv(tmp_path / "one.csv")["class_name"].tolist() == [preds["class_name"][0]]
    as_folder = run_cli("orchestrator.predict", str(grid_file), str(quickdraw_root / "test"), "--format", "submission",
                        "--output", "folder_submission.csv", cwd=tmp_path)
    assert as_folder.returncode == 0, as_folder.stderr
    written = pd.read_csv(tmp_path / "folder_submission.csv")
    assert written.columns.tolist() == ["image_path", "target", "class_name"] and len(written) == 300

    # the same images sharded over Ray tasks (a Ray of its own here; a cluster with --address auto)
    sharded = run_cli("orchestrator.predict", str(grid_file), str(quickdraw_root / "test"), "--output", "sharded.csv",
                      "--topk", "3", "--address", "local", "--batch-size", "32", cwd=tmp_path)
    assert sharded.returncode == 0, sharded.stderr
    assert "Ray tasks" in sharded.stderr
    assert pd.read_csv(tmp_path / "sharded.csv")[["image_path", "target"]].equals(preds[["image_path", "target"]])

    # a CSV naming a missing image: exit 2, the file and line named
    (quickdraw_root.parent / "bad.csv").write_text(f"image_path\nsketch/test/{preds['image_path'][0]}\nsketch/nope.jpg\n")
    bad = run_cli("orchestrator.predict", str(grid_file), str(quickdraw_root.parent / "bad.csv"), cwd=tmp_path)
    assert bad.returncode == 2 and "bad.csv line 3" in bad.stderr and "Traceback" not in bad.stderr

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_on_s3}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", "mlflow models serve", seconds=120)
        files = [quickdraw_root / "test" / p for p in preds["image_path"][:4]]
        status, by_path = post(f"{url}/invocations", {"dataframe_split": {"columns": ["image_path"],
                                                                          "data": [[str(f)] for f in files]}})
        assert status == 200
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        status, by_bytes = post(f"{url}/invocations", {"dataframe_records": [{"image": e} for e in encoded],
                                                       "params": {"topk": 2}})
        assert status == 200
        expected = preds["class_name"][:4].tolist()
        assert [p["class_name"] for p in by_path["predictions"]] == [p["class_name"] for p in by_bytes["predictions"]] == expected
        assert "top2_prob" in by_bytes["predictions"][0] and "top3_class" not in by_bytes["predictions"][0]
        status, error = post(f"{url}/invocations", {"dataframe_records": [{"image": encoded[0]},
                                                                          {"image": base64.b64encode(b"text").decode()}]})
        assert status == 400 and "row 1: cannot read image" in error["message"]
    finally:
        server.terminate()
        server.wait(30)
    report_figure(f"orchestrator.predict on 300 quickdraw test images (test_vit, 2 folds; storage and MLflow artifacts on "
                  f"the S3 server): {speed}")
