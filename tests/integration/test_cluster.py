"""A grid on a real multi-node Ray cluster (several raylets on this machine) with its storage in a bucket:
spread over nodes, and chaos: Train worker processes and whole nodes killed on a seeded schedule.

A killed worker or a lost node is retried from the trial's last checkpoint (read
back from the bucket), in the same MLflow run, epochs logged once.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS
from tests.conftest import REPO, mlflow_runs, quickdraw_grid, run_cli, write_grid
from tests.integration.test_resume_and_faults import finish, start_cli, steps

SEED = 21  # the chaos schedule's: which epochs, which victims, process or node


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


def train_workers() -> list:
    """The live Ray Train worker processes on this machine (every node of the test cluster is here)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if cmdline and cmdline[0].startswith("ray::RayTrainWorker"):
            found.append(process)
    return found


def chaos(cluster, workers: list, log, process, rng: random.Random, events: int, epochs_total: int) -> list[str]:
    """Kill Train worker processes and whole worker nodes on a seeded schedule while the grid runs; what was done.

    Each event waits until a seeded share of all epochs was reported, then SIGKILLs a random Train worker
    process, or removes the node of one (every process on it SIGKILLed, as a lost machine) and adds a
    fresh node in its place, as an autoscaler would.
    """
    done = []
    marks = sorted(rng.sample(range(2, epochs_total - 2), events))
    kinds = rng.sample(["process", "node"] + [rng.choice(["process", "node"]) for _ in range(events - 2)], events)
    for mark, kind in zip(marks, kinds, strict=True):
        deadline = time.monotonic() + 300
        while log.read_text().count("val_acc=") < mark or not train_workers():
            if process.poll() is not None or time.monotonic() > deadline:
                return done
            time.sleep(0.2)
        victim = rng.choice(train_workers())
        if kind == "process":
            victim.kill()
            done.append(f"worker pid {victim.pid} after {mark} epochs")
            continue
        host = next((n for n in workers if victim.pid in {p.pid for p in psutil_children(n)}), None)
        if host is None:
            victim.kill()
            done.append(f"worker pid {victim.pid} after {mark} epochs (its node not found)")
            continue
        cluster.remove_node(host, allow_graceful=False)
        workers.remove(host)
        workers.append(cluster.add_node(num_cpus=1))
        done.append(f"node {host.node_id[:8]} after {mark} epochs")
    return done


def psutil_children(node) -> list:
    """Every process under a node's raylet."""
    import psutil

    try:
        return psutil.Process(node.all_processes["raylet"][0].process.pid).children(recursive=True)
    except (psutil.NoSuchProcess, KeyError, IndexError):
        return []


def test_a_grid_on_bucket_storage_survives_seeded_worker_and_node_kills(tmp_path, quickdraw_root, report_figure,
                                                                        monkeypatch, s3):
    """Head (0 CPUs, the trial slots) + 2 one-CPU worker nodes, storage in a bucket on the S3 server; worker
    processes and nodes are killed on a seeded random schedule (the way Ray tests its own fault tolerance).

    Every trial ends FINISHED in its one MLflow run with each epoch logged once, and the ensemble is written.
    """
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the nodes' workers import this checkout, as the installed package would
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # every node reaches the bucket the standard way
    bucket = s3.bucket("chaos")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {TRIAL_SLOTS: SLOT_UNITS}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        grid = quickdraw_grid(quickdraw_root, "chaos", models=[{"name": "resnet10t"}], scheduler={"kind": "fifo"},
                              tracking={"uri": uri, "storage": f"s3://{bucket}/grids"})
        grid["train"].update(epochs=5, batch_size=32)
        grid["data"]["folds"]["use"] = [0, 1]
        grid["resources"]["max_failures"] = 6
        grid_file = write_grid(tmp_path, grid)
        process, log = start_cli("orchestrator.run", str(grid_file), "--address", cluster.address, cwd=tmp_path)
        started = time.monotonic()
        done = chaos(cluster, workers, log, process, random.Random(SEED), events=3, epochs_total=10)
        text = finish(process, log)
        assert process.returncode == 0, text
        assert len(done) == 3, f"the grid ended before every kill: {done}"
        assert any(d.startswith("worker") for d in done) and any(d.startswith("node") for d in done)

        runs = [r for r in mlflow_runs(uri, "chaos") if r.data.tags["orchestrator.role"] == "trial"]
        assert len(runs) == 2 and len({r.data.tags["trial_key"] for r in runs}) == 2  # one run per trial identity
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags["predictions"] == "true"
            assert steps(uri, run.info.run_id) == [1, 2, 3, 4, 5]  # nothing lost, nothing logged twice
        retries = sum(int(r.data.tags.get("retries", 0)) for r in runs)
        assert retries >= 3, f"{retries} retries for {done}"  # each kill hit a trial, which went on from its checkpoint
        first_nodes = {r.data.tags["nodes"].split(",")[0] for r in runs}
        assert len(first_nodes) == 2, f"both trials started on one node: {first_nodes}"
        assert re.search(r"retry \d/6 continues from the checkpoint of epoch \d", text)
        assert "grids/chaos/data/folds.parquet" in s3.keys(bucket, "grids/chaos/data/")
        ensemble = run_cli("orchestrator.ensemble", str(grid_file), cwd=tmp_path)
        assert ensemble.returncode == 0, ensemble.stderr
        assert (tmp_path / "submission.csv").is_file()
        missing_paths_are_named_per_node(cluster.address, tmp_path, len(cluster.worker_nodes))
        report_figure(f"chaos on 3 nodes, storage on the S3 server (seed {SEED}): {'; '.join(done)}; {retries} retries, "
                      f"both trials FINISHED with epochs 1-5 once; grid {time.monotonic() - started:.0f} s; ensemble written")
    finally:
        cluster.shutdown()
