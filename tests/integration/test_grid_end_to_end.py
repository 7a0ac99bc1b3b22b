"""The product end to end on real sketches: grid -> Ray Tune/Train -> MLflow -> ensemble submission."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import free_port, mlflow_runs, quickdraw_grid, run_cli, wait_for_http, write_grid

TERMINAL = {"FINISHED", "KILLED"}


def test_quickdraw_grid_asha_mlflow_ensemble(tmp_path, quickdraw_root, report_figure):
    from mlflow.tracking import MlflowClient

    grid_file = write_grid(tmp_path, quickdraw_grid(quickdraw_root, "quickdraw-e2e", insight={"gradcam_configs": 2, "gallery": 16}))
    started = time.monotonic()
    result = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    grid_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "config_id" in result.stdout and "mlflow ui --backend-store-uri" in result.stdout  # summary + UI command
    for noise in ("Token authentication", "tensorboard", "Configuration for experiment", "on_step_end took",
                  "View run", "Tuner.restore"):  # Ray's and MLflow's lines go to the grid's ray-driver.log, or nowhere
        assert noise not in result.stdout + result.stderr, noise

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = mlflow_runs(uri, "quickdraw-e2e")
    parents = [r for r in runs if r.data.tags["orchestrator.role"] == "grid"]
    children = [r for r in runs if r.data.tags["orchestrator.role"] == "trial"]
    assert len(parents) == 1 and len(children) == 6  # 2 models x 3 folds, one run each
    client = MlflowClient(uri)
    for child in children:
        assert child.info.status in TERMINAL and child.data.tags["status"] == child.info.status
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert {"config_id", "fold", "model"} <= set(child.data.tags)
        assert child.data.params == {"model": child.data.tags["model"]}  # no search axes: the grid's settings are the parent's
        assert child.data.tags["mlflow.note.content"].startswith(f"**{child.data.tags['model']}**, fold")
        inputs = {d.dataset.name for d in client.get_run(child.info.run_id).inputs.dataset_inputs}
        assert inputs == {"quickdraw-e2e-train", "quickdraw-e2e-test"}  # the Datasets column
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert len(history) == int(child.data.tags["epochs"]) >= 1
        assert {"train_loss", "val_loss", "val_f1", "lr", "epoch_time_s", "images_per_s"} <= set(child.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"oof.parquet", "test.parquet", "checkpoint", "trial_config.json", "confusion_matrix.png"} <= artifacts
        insight = {a.path for a in client.list_artifacts(child.info.run_id, "insight")}
        assert {"insight/per_class.json", "insight/mistakes.txt", "insight/confusion.png", "insight/gallery.png"} <= insight
        assert "system/cpu_utilization_percentage" in child.data.metrics  # the System metrics tab
        assert child.data.metrics["cost_cpu_hours"] > 0
    gradcam = [c for c in children if "insight/gradcam.png" in {a.path for a in client.list_artifacts(c.info.run_id, "insight")}]
    assert {c.data.tags["config_id"] for c in gradcam} == {c.data.tags["config_id"] for c in children}  # the 2 best: both
    parent = parents[0]
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"grid.yaml", "data", "summary.csv", "leaderboard.csv"} <= parent_artifacts
    assert parent.data.params["train.optimizer.lr"] == "0.003"
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert "**Best config:**" in parent.data.tags["mlflow.note.content"]
    for unit in ("cpu_hours", "wall_s"):  # the grid's cost is its trials' cost
        assert parent.data.metrics[f"cost_{unit}"] == pytest.approx(sum(c.data.metrics[f"cost_{unit}"] for c in children))
    assert "mean val_acc" in result.stdout and "cost: " in result.stdout  # the leaderboard and the cost, printed
    assert re.search(r"disk: storage \d+ MB in .*; MLflow artifacts \d+ MB in .*; image cache", result.stdout)
    trials = tmp_path / "ray_results" / "quickdraw-e2e" / "trials"  # ended: the one copy of the weights is MLflow's
    assert not list(trials.rglob("*.pt")), f"ended trials keep checkpoints in storage: {list(trials.rglob('*.pt'))}"
    assert "MB of ended trials' checkpoints (their best weights are in their MLflow runs) removed" in result.stdout

    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0, ensemble.stderr
    ensemble_run = next(r for r in mlflow_runs(uri, "quickdraw-e2e") if r.data.tags["orchestrator.role"] == "ensemble")
    ens, best = ensemble_run.data.metrics["ensemble_oof_val_acc"], ensemble_run.data.metrics["best_member_oof_val_acc"]
    assert ens >= best
    submission = pd.read_csv(tmp_path / "submission.csv")
    labels = pd.read_csv(quickdraw_root / "test_labels.csv")
    assert list(submission.columns) == ["ID", "image_path", "target"] and len(submission) == len(labels) == 300
    holdout = float((submission["target"].to_numpy() == labels["target"].to_numpy()).mean())
    assert holdout > 0.3  # 10 classes: chance is 0.1

    # the same grid again: nothing to train, so no Ray and no new parent run; --dry-run says what would be reused
    dry = run_cli("orchestrator.run", str(grid_file), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "6 would be reused (ended earlier), 0 continued with --resume" in dry.stdout
    started = time.monotonic()
    again = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path, env={"MLFLOW_PORT": "5055"})
    rerun_seconds = time.monotonic() - started
    assert again.returncode == 0 and "nothing to train: all 6 trials of this grid ended in earlier runs" in again.stdout
    assert "--port 5055, then open http://127.0.0.1:5055/#/experiments/" in again.stdout  # the user's port, both places
    assert "mean val_acc" in again.stdout and "Ray's log" not in again.stdout  # the leaderboard; Ray never started
    assert len([r for r in mlflow_runs(uri, "quickdraw-e2e") if r.data.tags["orchestrator.role"] == "grid"]) == 1

    launch_costs = []
    for child in children:
        first = client.get_metric_history(child.info.run_id, "val_acc")[0]
        first_epoch = client.get_metric_history(child.info.run_id, "epoch_time_s")[0].value
        launch_costs.append((first.timestamp - child.info.start_time) / 1000 - first_epoch)
    statuses = [c.info.status for c in children]
    report_figure(f"quickdraw10 grid (2 models x 3 folds, ASHA): {grid_seconds:.0f} s wall, "
                  f"{statuses.count('FINISHED')} finished / {statuses.count('KILLED')} stopped by ASHA")
    report_figure(f"quickdraw10 ensemble: OOF acc {ens:.4f} vs best member {best:.4f}; held-out test acc {holdout:.4f}")
    report_figure(f"trial fixed cost (launch -> first epoch report, minus that epoch): median {statistics.median(launch_costs):.1f} s")
    report_figure(f"the finished grid run again: {rerun_seconds:.1f} s (nothing to train, Ray not started)")


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with its own sqlite store and artifact root."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "server-art"),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", "mlflow server")
        yield uri
    finally:
        server.terminate()
        server.wait(30)


def test_asha_stops_never_block_later_trials_with_mlflow_server(tmp_path, quickdraw_root, mlflow_server, report_figure):
    """lr=1e-9 learns nothing: ASHA must stop it at the first rung, and the config after it must still run.

    One trial at a time: lr 3e-3 (about 0.6 at the epoch-2 rung), then lr 1e-9 (0.1 there:
    below the rung's median, so its stop is certain, not a matter of timing), then lr 1e-3.
    With a single slot, a placement group leaked by the stopped trial would hang the third.
    (Stops among concurrent trials: test_quickdraw_grid_asha_mlflow_ensemble.)
    """
    grid = quickdraw_grid(
        quickdraw_root, "asha-server", models=[{"name": "resnet10t"}],
        search={"train.optimizer.lr": {"grid": [3.0e-3, 1.0e-9, 1.0e-3]}},
        scheduler={"kind": "asha", "metric": "val_acc", "mode": "max", "grace_period": 2, "reduction_factor": 2},
        resources={"cpus_per_worker": 1, "workers_per_trial": 1, "max_concurrent_trials": 1},
        tracking={"uri": mlflow_server, "storage": str(tmp_path / "ray_results")},
    )
    grid["train"].update(epochs=3, batch_size=32)
    grid["data"]["folds"]["use"] = [0]
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    children = [r for r in mlflow_runs(mlflow_server, "asha-server") if r.data.tags["orchestrator.role"] == "trial"]
    assert len(children) == 3 and all(c.info.status in TERMINAL for c in children)
    by_lr = {c.data.params["search.train.optimizer.lr"]: c for c in children}
    stopped = by_lr["1e-09"]
    assert stopped.info.status == "KILLED" and stopped.data.tags["epochs"] == "2"
    assert by_lr["0.003"].info.status == "FINISHED"
    assert all(c.data.tags["predictions"] == "true" for c in children)  # stopped trials still predict OOF + test
    assert by_lr["0.001"].info.start_time > stopped.info.start_time  # the trial after the stop got its slot
    assert by_lr["0.001"].info.end_time > stopped.info.end_time
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server
    report_figure(f"ASHA on mlflow server: {sum(c.info.status == 'KILLED' for c in children)} of 3 trials stopped early, grid finished")


def test_ddp_trial_with_two_workers(tmp_path, quickdraw_root):
    """workers_per_trial=2: DDP over gloo; validation gathers every row of the fold exactly once."""
    from mlflow.tracking import MlflowClient

    grid = quickdraw_grid(quickdraw_root, "ddp", models=[{"name": "test_vit"}],
                          resources={"cpus_per_worker": 1, "workers_per_trial": 2, "max_concurrent_trials": 1},
                          scheduler={"kind": "fifo"})
    grid["train"]["epochs"] = 2
    grid["data"]["folds"]["use"] = [1]
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (child,) = [r for r in mlflow_runs(uri, "ddp") if r.data.tags["orchestrator.role"] == "trial"]
    assert child.info.status == "FINISHED"
    folds = pd.read_parquet(next((tmp_path / "ray_results" / "ddp" / "data").glob("folds.parquet")))
    from mlflow.artifacts import download_artifacts

    oof = pd.read_parquet(download_artifacts(run_id=child.info.run_id, artifact_path="oof.parquet", tracking_uri=uri,
                                             dst_path=str(tmp_path / "dl")))
    assert sorted(oof["row_id"]) == sorted(folds.loc[folds["fold"] == 1, "row_id"])
    assert len(MlflowClient(uri).get_metric_history(child.info.run_id, "val_acc")) == 2


def test_failed_trial_is_failed_in_mlflow_and_the_grid_goes_on(tmp_path, quickdraw_root):
    """lr=1e10 drives the loss to NaN: that trial ends FAILED with the reason, the other config finishes, exit 1."""
    grid = quickdraw_grid(quickdraw_root, "failing", models=[{"name": "test_vit"}], scheduler={"kind": "fifo"},
                          search={"train.optimizer.lr": {"grid": [1.0e10, 1.0e-3]}})
    grid["train"].update(epochs=2, loss={"name": "cross_entropy"})
    grid["data"]["folds"]["use"] = [0]
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
    assert result.returncode == 1 and "1 trial(s) FAILED" in result.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    children = {r.data.params["search.train.optimizer.lr"]: r for r in mlflow_runs(uri, "failing")
                if r.data.tags["orchestrator.role"] == "trial"}
    assert children["10000000000.0"].info.status == "FAILED"
    assert children["0.001"].info.status == "FINISHED"
    from mlflow.tracking import MlflowClient

    error = Path(MlflowClient(uri).download_artifacts(children["10000000000.0"].info.run_id, "error.txt", str(tmp_path))).read_text()
    assert "train_loss is nan" in error and "not retried" in error  # NaN repeats from a checkpoint: no retries
    assert "retries" not in children["10000000000.0"].data.tags
    parent = next(r for r in mlflow_runs(uri, "failing") if r.data.tags["orchestrator.role"] == "grid")
    assert parent.info.status == "FINISHED"


def test_recipe_options_train_together_and_log_their_metrics(tmp_path, quickdraw_root, report_figure):
    """MixUp/CutMix, EMA, TTA, an AutoAugment-style sketch policy with a curriculum, progressive resizing and
    cosine warm restarts in one real trial."""
    grid = quickdraw_grid(quickdraw_root, "recipes", models=[{"name": "resnet10t"}], scheduler={"kind": "fifo"},
                          tta={"hflip": True, "scales": [1.0, 1.1]})
    grid["train"].update(epochs=3, batch_size=32, augment="autoaugment_sketch", ema={"decay": 0.99},
                         mix={"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "off_epoch": 2},
                         curriculum={"start": 0.3, "full_at_epoch": 2},
                         progressive_resize=[{"epochs": [0, 1], "image_size": 24}],
                         scheduler={"name": "cosine", "warmup_epochs": 0, "restarts": 1})
    grid["data"]["folds"]["use"] = [0]
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = mlflow_runs(uri, "recipes")
    (child,) = [r for r in runs if r.data.tags["orchestrator.role"] == "trial"]
    (parent,) = [r for r in runs if r.data.tags["orchestrator.role"] == "grid"]
    assert child.info.status == "FINISHED"
    metrics = child.data.metrics
    assert {"oof_acc", "oof_acc_tta", "oof_f1", "oof_f1_tta"} <= set(metrics)
    assert parent.data.params["train.ema.decay"] == "0.99" and parent.data.params["train.mix.cutmix_alpha"] == "1.0"
    assert parent.data.params["train.augment"] == "autoaugment_sketch"
    from mlflow.tracking import MlflowClient

    lr = [m.value for m in sorted(MlflowClient(uri).get_metric_history(child.info.run_id, "lr"), key=lambda m: m.step)]
    assert lr[1] > lr[0]  # the warm restart: the second cycle starts halfway through epoch 2
    report_figure(f"recipe trial (resnet10t, 3 epochs, mixup+cutmix, EMA, autoaugment_sketch + curriculum, 24 px "
                  f"then 32, warm restart): OOF acc {metrics['oof_acc']:.4f} plain, {metrics['oof_acc_tta']:.4f} with TTA")


def test_mask_grid_to_submission(tmp_path, mask_root, s3, monkeypatch):
    """The Mask layout end to end: folds by person, macro F1 tracked, a multi-head model beside a single-head one,
    the ensemble's methods compared and its decisions tuned for macro F1, `ImageID,ans` in info.csv order, the
    best config refitted on every row; then a pseudo-labelling round taught by that ensemble (refit included), and
    refitted in its turn. Storage in a bucket on the S3 server (the endpoint from AWS_ENDPOINT_URL)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    bucket = s3.bucket("mask")
    grid = {"name": "mask", "data": {"source": "mask", "root": str(mask_root), "image_size": 16,
                                     "folds": {"n_splits": 3, "use": [0, 1]}},
            "models": [{"name": "test_resnet"}, {"name": "test_resnet", "heads": "mask"}],
            "train": {"epochs": 1, "batch_size": 8, "loss": {"heads": {"age": {"name": "focal", "weight": 2.0}}}},
            "scheduler": {"kind": "fifo", "mode": "max"}, "insight": {"gradcam_configs": 0, "gallery": 0},
            "ensemble": {"method": "auto", "f1_offsets": "on", "refit": "best"},
            "tracking": {"uri": "sqlite:///mlflow.db", "storage": f"s3://{bucket}/runs"}}
    grid_file = write_grid(tmp_path, grid)
    assert run_cli("orchestrator.run", str(grid_file), cwd=tmp_path).returncode == 0
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "mask")
    children = [r for r in runs if r.data.tags["orchestrator.role"] == "trial" and r.data.tags.get("refit") != "true"]
    assert len(children) == 4 and all(c.info.status == "FINISHED" and "best_val_f1" in c.data.metrics for c in children)
    (refit,) = [r for r in runs if r.data.tags.get("refit") == "true"]  # the best config, trained on every row
    assert refit.info.status == "FINISHED" and refit.data.tags["predictions"] == "true"
    multi = [c for c in children if "val_f1_age" in c.data.metrics]  # per-head scores of the multi-head model
    assert len(multi) == 2 and {"val_acc_mask", "val_acc_gender", "val_f1_mask"} <= set(multi[0].data.metrics)
    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0
    assert "methods by cross-validated OOF val_f1: hill_climb" in ensemble.stdout and "macro-F1 offsets: OOF F1" in ensemble.stdout
    assert f"refit {refit.data.tags['config_id']}: its refit model" in ensemble.stdout, ensemble.stdout
    (ensemble_run,) = [r for r in mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "mask")
                       if r.data.tags["orchestrator.role"] == "ensemble"]
    assert {"method_oof_vote", "method_cv_vote", "ensemble_oof_val_f1_cv", "oof_f1_before_offsets", "oof_f1_offsets_cv",
            "f1_offsets_kept"} <= set(ensemble_run.data.metrics)
    submission = pd.read_csv(tmp_path / "submission.csv", dtype={"ImageID": str})
    info = pd.read_csv(mask_root / "eval" / "info.csv")
    assert list(submission.columns) == ["ImageID", "ans"] and submission["ImageID"].tolist() == info["ImageID"].tolist()
    assert submission["ans"].between(0, 17).all()

    # a pseudo-labelling round: every eval image, labelled by that ensemble, joins both folds' training rows
    round_two = run_cli("orchestrator.run", str(grid_file), "--pseudo", "latest", "--set", "pseudo.top_fraction=1.0", cwd=tmp_path)
    assert round_two.returncode == 0 and "Pseudo-labels: 5 of 5 test rows" in round_two.stdout
    assert any(k.startswith("runs/mask/data/folds-pseudo-") for k in s3.keys(bucket))  # the round's table, in the bucket
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "mask")
    (pseudo_parent,) = [r for r in runs if r.data.tags["orchestrator.role"] == "grid" and "pseudo_teacher" in r.data.tags]
    assert pseudo_parent.data.tags["pseudo_teacher"] == ensemble_run.info.run_id and pseudo_parent.data.tags["pseudo_rows"] == "5"
    assert f"runs/{ensemble_run.info.run_id}" in pseudo_parent.data.tags["mlflow.note.content"]  # a link to its teacher
    round_trials = [r for r in runs if r.data.tags["orchestrator.role"] == "trial"
                    and r.data.tags.get("mlflow.parentRunId") == pseudo_parent.info.run_id]
    round_configs = {r.data.tags["config_id"] for r in round_trials}
    assert len(round_configs) == 2  # its own configs: its rows differ, so nothing is reused
    (round_refit,) = [r for r in round_trials if r.data.tags.get("refit") == "true"]  # its best config's, on its rows
    assert round_refit.data.tags["config_id"] in round_configs and round_refit.info.status == "FINISHED"
    again = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert again.returncode == 0
    assert f"replacing {tmp_path / 'submission.csv'}: the previous one is kept in ensemble run {ensemble_run.info.run_id}" \
        in again.stdout
    latest = max((r for r in mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "mask")
                  if r.data.tags["orchestrator.role"] == "ensemble"), key=lambda r: r.info.start_time)
    members = set(latest.data.params["members"].split(","))
    assert len(members) == 4 and round_configs < members  # the ensemble combines both rounds


def test_optuna_searcher_proposes_configs_that_train_every_fold(tmp_path, quickdraw_root):
    grid = quickdraw_grid(quickdraw_root, "tpe", models=[{"name": "test_vit"}], scheduler={"kind": "fifo"},
                          searcher="optuna", num_samples=2,
                          search={"train.optimizer.lr": {"loguniform": [3.0e-4, 3.0e-3]}})
    grid["train"]["epochs"] = 1
    grid["data"]["folds"]["use"] = [0, 1]
    grid_file = write_grid(tmp_path, grid)
    dry = run_cli("orchestrator.run", str(grid_file), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "optuna TPE (seed 7) proposes 2 configs over: train.optimizer.lr" in dry.stdout
    result = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    children = [r for r in mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tpe") if r.data.tags["orchestrator.role"] == "trial"]
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    by_config: dict[str, set] = {}
    for child in children:
        by_config.setdefault(child.data.tags["config_id"], set()).add(child.data.tags["fold"])
        assert 3.0e-4 <= float(child.data.params["search.train.optimizer.lr"]) <= 3.0e-3
    assert list(by_config.values()) == [{"0", "1"}, {"0", "1"}]
