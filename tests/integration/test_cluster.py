"""A grid on a real multi-node Ray cluster (several raylets on this machine): spread, node loss, shared storage.

Losing a node SIGKILLs its Train worker too, so this is also the test of a killed
worker: retried from its last checkpoint, in the same MLflow run, epochs logged once.
"""

from __future__ import annotations

import re
import time

import pytest

from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS
from tests.conftest import REPO, mlflow_runs, quickdraw_grid, write_grid
from tests.integration.test_resume_and_faults import finish, start_cli, steps


def wait_for_run_at_epoch(uri: str, experiment: str, epoch: int, process, timeout: float = 300):
    """The first trial run that has logged `epoch` and says which node it runs on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for run in mlflow_runs(uri, experiment):
            if "nodes" in run.data.tags and run.data.metrics.get("epoch_time_s") is not None \
                    and max(steps(uri, run.info.run_id), default=0) >= epoch:
                return run
        time.sleep(0.5)
    pytest.fail(f"no trial reached epoch {epoch} (driver exit code {process.poll()})")


def missing_paths_are_named_per_node(address: str, tmp_path, workers: int) -> None:
    """The preflight asks every node; on one machine a path is there for all or none, so test both."""
    import ray

    from orchestrator.errors import InputError
    from orchestrator.search.preflight import check_shared_paths, missing_on_nodes

    ray.init(address=address)
    try:
        paths = {"tracking.storage": str(tmp_path), "data.root": str(tmp_path / "not-copied")}
        missing = missing_on_nodes(paths)
        assert list(missing) == ["data.root"] and len(missing["data.root"]) == 1 + workers  # the head and each worker
        with pytest.raises(InputError, match=r"data.root=.*not-copied does not exist on node\(s\) .*NFS"):
            check_shared_paths(paths)
        assert missing_on_nodes({"tracking.storage": "s3://bucket/ray_results"}) == {}  # URIs: not a node's business
    finally:
        ray.shutdown()


@pytest.mark.integration
def test_trials_spread_over_nodes_and_survive_losing_one(tmp_path, quickdraw_root, report_figure, monkeypatch):
    """Head (0 CPUs, the trial slots) + 2 one-CPU worker nodes; the node of a running trial is killed after epoch 2.

    Storage is a file:// URI, the code path S3/GCS take (pyarrow filesystems), on a
    folder every node of this machine shares.
    """
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the nodes' workers import this checkout, as the installed package would
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {TRIAL_SLOTS: SLOT_UNITS}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        grid = quickdraw_grid(quickdraw_root, "multi-node", models=[{"name": "resnet10t"}], scheduler={"kind": "fifo"},
                              tracking={"uri": uri, "storage": (tmp_path / "shared").as_uri()})
        grid["train"].update(epochs=4, batch_size=32)
        grid["data"]["folds"]["use"] = [0, 1]
        process, log = start_cli("orchestrator.run", str(write_grid(tmp_path, grid)), "--address", cluster.address,
                                 cwd=tmp_path)
        victim_run = wait_for_run_at_epoch(uri, "multi-node", 2, process)
        prefix = victim_run.data.tags["nodes"].split("/")[1]
        (victim,) = [n for n in workers if n.node_id.startswith(prefix)]
        cluster.remove_node(victim, allow_graceful=False)  # like a machine lost: every process of the node SIGKILLed
        killed_at = time.monotonic()
        text = finish(process, log)
        assert process.returncode == 0, text

        runs = [r for r in mlflow_runs(uri, "multi-node") if r.data.tags["orchestrator.role"] == "trial"]
        assert sorted(r.data.tags["trial_key"] for r in runs) == sorted({r.data.tags["trial_key"] for r in runs})
        assert len(runs) == 2  # one run per trial identity: the retry went on in its own run, no duplicate
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["predictions"] == "true"
            assert steps(uri, run.info.run_id) == [1, 2, 3, 4]  # nothing lost, nothing logged twice
        first_nodes = {r.data.tags["nodes"].split(",")[0] for r in runs}
        assert len(first_nodes) == 2, f"both trials started on one node: {first_nodes}"
        moved = next(r for r in runs if r.info.run_id == victim_run.info.run_id)
        assert moved.data.tags["retries"] == "1"
        assert len(moved.data.tags["nodes"].split(",")) == 2  # retried on the surviving node, from its checkpoint
        assert re.search(r"retry 1/2 continues from the checkpoint of epoch [23]", text)
        assert (tmp_path / "shared" / "multi-node" / "data" / "folds.parquet").is_file()
        missing_paths_are_named_per_node(cluster.address, tmp_path, len(cluster.worker_nodes))
        report_figure(f"multi-node: 2 trials on 2 nodes; node of one killed after epoch 2, retried on the other from its "
                      f"checkpoint, both FINISHED with epochs 1-4 once; {time.monotonic() - killed_at:.0f} s from the "
                      f"node kill to the grid's exit")
    finally:
        cluster.shutdown()

