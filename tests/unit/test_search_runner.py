"""How many trials run at once, from the CPUs and GPUs to plan for."""

from __future__ import annotations

from orchestrator.config import ResourcesConfig
from orchestrator.search.runner import concurrent_trials


def test_gpu_trials_fit_the_grown_cluster_not_the_empty_one():
    res = ResourcesConfig(cpus_per_worker=4, gpus_per_worker=1)
    assert concurrent_trials(res, {"CPU": 4, "GPU": 0}) == 1  # never 0: a trial waits for the autoscaler
    assert concurrent_trials(res, {"CPU": 20, "GPU": 4}) == 4  # cluster.yaml at full size: head + 4 g5.xlarge


def test_fractional_gpus_pack_trials_and_the_user_cap_wins():
    res = ResourcesConfig(cpus_per_worker=1, gpus_per_worker=0.5)
    assert concurrent_trials(res, {"CPU": 20, "GPU": 4}) == 8
    assert concurrent_trials(res.model_copy(update={"max_concurrent_trials": 3}), {"CPU": 20, "GPU": 4}) == 3


def test_a_ddp_trial_holds_all_its_workers():
    ddp = ResourcesConfig(cpus_per_worker=2, gpus_per_worker=1, workers_per_trial=2)
    assert concurrent_trials(ddp, {"CPU": 20, "GPU": 4}) == 2
