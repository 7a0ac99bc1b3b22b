"""benchmarks/gpu_check.py, the one command that proves the GPU path, in its CPU fallback (so it cannot rot).

Without CUDA, Ray declares one logical GPU: a trial is placed on it, two trials with
`gpus_per_worker: 0.5` share it at the same time (and are charged half a GPU each), a
2-worker DDP trial runs over gloo, and every process trains on the CPU because torch
finds no CUDA device.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import QUICKDRAW, REPO, mlflow_runs


def test_gpu_check_runs_every_phase_on_the_cpu_and_each_trial_ends_with_predictions(tmp_path):
    if not QUICKDRAW.is_dir():
        pytest.skip(f"quickdraw10 not found at {QUICKDRAW}")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--model", "resnet10t",
                             "--image-size", "32", "--per-class", "30", "--epochs", "1", "--batch-size", "32",
                             "--keep", str(tmp_path)], capture_output=True, text=True, timeout=900, check=False)
    print(result.stdout, result.stderr[-3000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every trial FINISHED with its predictions" in result.stdout
    for title in ("1. one trial on the logical GPU", "2. two trials sharing it", "3. DDP: one trial, 2 CPU workers"):
        assert title in result.stdout

    shared = [r for r in mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "gpu-check-2")
              if r.data.tags["orchestrator.role"] == "trial"]
    assert len(shared) == 2
    for run in shared:  # each held half of the GPU for as long as it ran
        held = run.data.metrics
        assert held["cost_gpu_hours"] == pytest.approx(held["cost_wall_s"] * 0.5 / 3600)
        assert held["checkpoint_s"] >= 0 and run.data.tags["predictions"] == "true"
