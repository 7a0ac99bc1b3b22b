"""Trials scheduled on GPUs through Ray, on a machine without CUDA: Ray declares one logical GPU.

Two trials with `gpus_per_worker: 0.5` share it (they run at the same time), their
prediction tasks ask for GPU shares too, and every process falls back to the CPU
because torch finds no CUDA device.
"""

from __future__ import annotations

import pytest

from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS
from tests.conftest import REPO, mlflow_runs, quickdraw_grid, run_cli, write_grid


def test_two_trials_share_one_logical_gpu_and_train_on_the_cpu(tmp_path, quickdraw_root, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "num_gpus": 1, "resources": {TRIAL_SLOTS: SLOT_UNITS}})
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        grid = quickdraw_grid(quickdraw_root, "logical-gpu", models=[{"name": "resnet10t"}], scheduler={"kind": "fifo"},
                              tracking={"uri": uri, "storage": str(tmp_path / "ray_results")},
                              resources={"cpus_per_worker": 1, "gpus_per_worker": 0.5, "workers_per_trial": 1})
        grid["train"].update(epochs=2, batch_size=32)
        grid["data"]["folds"]["use"] = [0, 1]
        result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), "--address", cluster.address, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        runs = [r for r in mlflow_runs(uri, "logical-gpu") if r.data.tags["orchestrator.role"] == "trial"]
        assert len(runs) == 2
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["predictions"] == "true"
            held = run.data.metrics  # each trial held half a GPU for as long as it ran
            assert held["cost_gpu_hours"] == pytest.approx(held["cost_wall_s"] * 0.5 / 3600)
        first, second = sorted(runs, key=lambda r: r.info.start_time)
        assert second.info.start_time < first.info.end_time  # both held half of the one GPU at once
    finally:
        cluster.shutdown()
