"""How many trials run at once, from the CPUs and GPUs to plan for."""

from __future__ import annotations

import pytest

from orchestrator.config import ResourcesConfig
from orchestrator.search.runner import concurrent_trials
from orchestrator.search.trainable import TRIAL_SLOTS, trainable_resources


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


def test_local_mode_auto_is_on_for_one_worker_on_a_ray_of_its_own():
    assert ResourcesConfig().settled(ray_is_local=True).in_trial
    assert not ResourcesConfig().settled(ray_is_local=False).in_trial  # a cluster: a lost node is retried elsewhere
    assert not ResourcesConfig(workers_per_trial=2).settled(ray_is_local=True).in_trial  # DDP needs the worker group
    assert not ResourcesConfig(local_mode="off").settled(ray_is_local=True).in_trial
    assert ResourcesConfig(local_mode="on").settled(ray_is_local=False).in_trial


def test_local_mode_on_refuses_several_workers():
    with pytest.raises(ValueError, match="local_mode: 'on' runs one worker per trial, but workers_per_trial is 2"):
        ResourcesConfig(local_mode="on", workers_per_trial=2)


def test_in_local_mode_the_trainable_holds_its_workers_resources():
    """Out of it the trainable holds no CPU (its Train workers do); either way a share of the trial slots."""
    local = trainable_resources(ResourcesConfig(local_mode="on", cpus_per_worker=2, gpus_per_worker=0.5), slots=3)
    assert local == {"CPU": 2, "GPU": 0.5, TRIAL_SLOTS: 333.3333}
    assert trainable_resources(ResourcesConfig(local_mode="off"), slots=None) == {"CPU": 0, "memory": 64 * 1024**2}
