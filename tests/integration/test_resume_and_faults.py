"""Surviving faults on a real local Ray: a killed driver (--resume), a damaged checkpoint, a grown grid, a full disk.

The resume test keeps its grid in a bucket on a real S3 API server, the endpoint
in the storage URI's query (pyarrow's own form), as MinIO and on-prem stores use it.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, mlflow_runs, quickdraw_grid, run_cli, write_grid


def start_cli(module: str, *args: str, cwd: Path) -> tuple[subprocess.Popen, Path]:
    """Start `python -m module args` in the background (its own process group); output goes to a log file."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    log = cwd / f"{module}.{time.monotonic_ns()}.log"
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def wait_for(log: Path, pattern: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text()):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"never saw {pattern!r} in {log.name}:\n{log.read_text()[-4000:]}")


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    process.wait(timeout=timeout)
    text = log.read_text()
    print(text)
    return text


def trial_runs(uri: str, experiment: str) -> list:
    return [r for r in mlflow_runs(uri, experiment) if r.data.tags["orchestrator.role"] == "trial"]


def steps(uri: str, run_id: str, metric: str = "val_acc") -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, metric))


def test_resume_after_driver_kill_then_grow_the_grid(tmp_path, quickdraw_root, report_figure, s3):
    """(b) kill -9 the driver mid-grid, damage the unfinished trial's latest checkpoint, --resume: every trial ends
    FINISHED once, one run per identity; the same for the best config's refit on all rows, killed in its turn;
    (c) add a model and run again: only its trials train, and the ensemble sees old and new (and the refit).
    Storage: a bucket, the endpoint in the URI's query."""
    bucket = s3.bucket("resume")
    grid = quickdraw_grid(quickdraw_root, "resume", models=[{"name": "resnet10t"}], scheduler={"kind": "fifo"},
                          search={"train.optimizer.lr": {"grid": [3.0e-3, 1.0e-3]}},
                          tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "storage": f"s3://{bucket}/grids{s3.query()}"})
    grid["ensemble"]["refit"] = "best"
    grid["train"]["epochs"] = 3
    grid["data"]["folds"]["use"] = [0]
    grid["resources"]["max_concurrent_trials"] = 1
    grid_file = write_grid(tmp_path, grid)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    process, log = start_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    wait_for(log, r"FINISHED", process)  # the first trial ended (predictions logged) ...
    wait_for_count(log, "epoch 1/3", 2, process)  # ... and the second has a checkpoint
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {r.data.tags["trial_key"]: r.data.tags["status"] for r in trial_runs(uri, "resume")}
    assert sorted(before.values()) == ["FINISHED", "RUNNING"], before  # the driver died before it could close the run
    (unfinished,) = [key for key, status in before.items() if status == "RUNNING"]
    damaged = truncate_latest_checkpoint(s3, bucket, f"grids/resume/trials/{unfinished}/")

    process, log = start_cli("orchestrator.run", str(grid_file), "--resume", cwd=tmp_path)
    wait_for(log, r"-refit resnet10t: epoch 1/3", process, timeout=600)  # the folds ended; the refit is killed too
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed = log.read_text()
    assert "(1 reused from earlier runs, 1 continued)" in resumed
    assert re.search(r"started again after epoch [123]", resumed)
    assert f"{unfinished}: checkpoint {damaged} is damaged (model.pt has 100 bytes" in resumed
    assert re.search(rf"{unfinished}: .*(continues from checkpoint epoch_000|starts afresh from epoch 1)", resumed)
    (refit_key,) = re.findall(r"(\w+-refit) resnet10t: epoch 1/3", resumed)

    again = run_cli("orchestrator.run", str(grid_file), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"{refit_key} resnet10t: started again after epoch [123]", again.stdout), again.stdout
    runs = trial_runs(uri, "resume")
    folds = [r for r in runs if r.data.tags.get("refit") != "true"]
    assert len(folds) == 2 and {r.data.tags["trial_key"] for r in folds} == set(before)  # one run per identity
    assert all(r.info.status == "FINISHED" and r.data.tags["predictions"] == "true" for r in runs)
    assert all(steps(uri, r.info.run_id) == [1, 2, 3] for r in folds)  # continued, never restarted or duplicated
    (refit,) = [r for r in runs if r.data.tags.get("refit") == "true"]  # one run, its epochs logged once each
    assert refit.data.tags["trial_key"] == refit_key and steps(uri, refit.info.run_id, "train_loss") == [1, 2, 3]
    parents = [r for r in mlflow_runs(uri, "resume") if r.data.tags["orchestrator.role"] == "grid"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and "resumed" in parents[0].data.tags

    grid["models"].append({"name": "test_vit"})
    grown = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), "--set", "resources.max_concurrent_trials=2",
                    cwd=tmp_path)
    assert grown.returncode == 0, grown.stderr
    assert "2 trials to run (2 reused from earlier runs, 0 continued)" in grown.stdout
    runs = [r for r in trial_runs(uri, "resume") if r.data.tags.get("refit") != "true"]
    assert collections.Counter(r.data.tags["model"] for r in runs) == {"resnet10t": 2, "test_vit": 2}
    assert len({r.data.tags["trial_key"] for r in runs}) == 4
    ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
    assert ensemble.returncode == 0, ensemble.stderr
    assert re.search(r"of 4 members\): OOF", ensemble.stdout), ensemble.stdout  # old and new configs together
    assert re.search(rf"refit {refit_key.removesuffix('-refit')}: ", ensemble.stdout), ensemble.stdout
    report_figure(f"driver kill -9 mid-grid, the latest checkpoint ({damaged}) truncated, --resume on S3 storage: "
                  f"2 identities, 2 child runs FINISHED, epochs 1-3 logged once each; the best config's refit killed "
                  f"and resumed the same way; grown by a model: 2 new trials trained, 2 reused, ensemble over 4 configs")


def truncate_latest_checkpoint(s3, bucket: str, prefix: str) -> str:
    """Cut the newest committed checkpoint's model.pt under `prefix` to 100 bytes (a node lost mid-write); its name."""
    keys = [k for k in s3.keys(bucket, prefix) if k.endswith("/MANIFEST.json")]
    assert keys, f"no committed checkpoint under s3://{bucket}/{prefix}"
    latest = max(k.split("/")[-2] for k in keys)
    model = f"{prefix}{latest}/model.pt"
    body = s3.client().get_object(Bucket=bucket, Key=model)["Body"].read()
    s3.client().put_object(Bucket=bucket, Key=model, Body=body[:100])
    return latest


def wait_for_count(log: Path, text: str, count: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if log.read_text().count(text) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"never saw {text!r} {count} times in {log.name}:\n{log.read_text()[-4000:]}")


@pytest.fixture
def small_volume(tmp_path):
    """A real 10 MB tmpfs (root only): a volume that fills up mid-grid; `grow()` frees space as a user would."""
    volume = tmp_path / "volume"
    volume.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(volume)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")

    class Volume:
        path = volume

        @staticmethod
        def grow() -> None:
            subprocess.run(["mount", "-o", "remount,size=64m", str(volume)], check=True)

    try:
        yield Volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def test_a_full_storage_stops_the_grid_with_one_message_and_resume_completes(tmp_path, quickdraw_root, small_volume):
    """Two test_vit trials (3.7 MB a checkpoint) on a 10 MB volume: full in their second epoch."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = quickdraw_grid(quickdraw_root, "full", models=[{"name": "test_vit"}], scheduler={"kind": "fifo"},
                          tracking={"uri": uri, "storage": str(small_volume.path)})
    grid["data"]["folds"]["use"] = [0, 1]
    grid_file = write_grid(tmp_path, grid)
    full = run_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    assert full.returncode == 3, full.stderr
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: tracking.storage is full: no space left on device under {small_volume.path}/full")
    assert "MB free" in message and "--resume" in message and "nothing is lost" in message
    assert "Traceback" not in full.stdout + full.stderr and "Error" not in full.stdout

    small_volume.grow()
    resumed = run_cli("orchestrator.run", str(grid_file), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 continued" in resumed.stdout
    runs = trial_runs(uri, "full")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert all(steps(uri, r.info.run_id) == [1, 2, 3] for r in runs)  # each epoch logged once


def test_ctrl_c_is_exit_130_with_the_tools_advice_only_and_resume_completes(tmp_path, quickdraw_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = quickdraw_grid(quickdraw_root, "ctrl-c", models=[{"name": "test_vit"}], scheduler={"kind": "fifo"},
                          tracking={"uri": uri, "storage": str(tmp_path / "runs")})
    grid["train"]["epochs"] = 12
    grid["data"]["folds"]["use"] = [0]
    grid_file = write_grid(tmp_path, grid)
    process, log = start_cli("orchestrator.run", str(grid_file), cwd=tmp_path)
    wait_for(log, r"epoch 2/12", process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground process group
    text = finish(process, log, timeout=300)
    assert process.returncode == 130, text
    assert f"`python -m orchestrator.run {grid_file} --resume` continues them" in text
    assert "Tuner.restore" not in text and "Traceback" not in text and "Failed to fetch metrics" not in text
    assert "ensemble:" not in text  # nothing ended: nothing to ensemble yet
    resumed = run_cli("orchestrator.run", str(grid_file), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = trial_runs(uri, "ctrl-c")
    assert run.info.status == "FINISHED" and steps(uri, run.info.run_id) == list(range(1, 13))
