"""Where a trial's start-up goes: a timeline from the driver's launch to the trial's first epoch report.

Starts a one-node Ray cluster (as `ray start` would, with the trial slots), runs a
grid of one trial, or of two starting together (`python -m orchestrator.run
--address ...`), against it in local mode (the loop in the Tune trial's process)
and with a Ray Train worker group, then reads Ray's own task records (state API)
for every task and actor the run created: when it was submitted, when a worker
process began running it, when it ended. The epoch reports come from MLflow.
Times are seconds after the launch.

    python benchmarks/startup_timeline.py [--per-class 100] [--model resnet10t] [--modes on off] [--trials 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def grid(root: Path, model: str, local_mode: str, trials: int) -> dict:
    return {"name": "startup", "seed": 0, "models": [{"name": model}],
            "data": {"source": "sketch_csv", "root": str(root), "image_size": 32,
                     "folds": {"kind": "stratified", "n_splits": 5, "use": list(range(trials))}},
            "train": {"epochs": 1, "batch_size": 64}, "scheduler": {"kind": "fifo"},
            "resources": {"cpus_per_worker": 1, "workers_per_trial": 1, "local_mode": local_mode}}


POLLING = ("poll_status", "_QueueActor.get", "_QueueActor.put")  # every 0.5 s while a trial runs: not start-up


def task_rows(launch_ms: float) -> list[tuple[float, float, float, str]]:
    """(submitted, running, ended) seconds after launch and a name, for every task and actor of the run."""
    from ray.util.state import list_tasks

    rows = []
    for task in list_tasks(detail=True, limit=10000, raise_on_missing_output=False):
        events = {e["state"]: e["created_ms"] for e in task.events or []}
        submitted = task.creation_time_ms or events.get("PENDING_ARGS_AVAIL")
        running = events.get("RUNNING") or task.start_time_ms
        if submitted is None or submitted < launch_ms or task.func_or_class_name.endswith(POLLING):
            continue
        seconds = [None if t is None else (t - launch_ms) / 1000 for t in (submitted, running, task.end_time_ms)]
        kind = "actor" if task.type == "ACTOR_CREATION_TASK" else "task"
        rows.append((*seconds, f"{kind} {task.func_or_class_name}"))
    return sorted(rows, key=lambda r: r[0])


def first_reports(work: Path, launch: float) -> list[tuple[float, float, float]]:
    """(first report, that epoch's seconds, MLflow run opened) after launch, per trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("startup")
    out = []
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags["orchestrator.role"] == "trial":
            first = min(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step)
            out.append((first.timestamp / 1000 - launch, first.value, run.info.start_time / 1000 - launch))
    return out


def timeline(root: Path, model: str, local_mode: str, trials: int) -> tuple[list, list]:
    """(Ray's task rows, the trials' first reports) of one grid run on a fresh one-node cluster."""
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "grid.yaml").write_text(yaml.safe_dump(grid(root, model, local_mode, trials)))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": os.cpu_count(), "resources": {TRIAL_SLOTS: SLOT_UNITS}})
        try:
            launch = time.time()
            subprocess.run([sys.executable, "-m", "orchestrator.run", "grid.yaml", "--address", cluster.address],
                           cwd=work, check=True, stdout=subprocess.DEVNULL)
            ray.init(address=cluster.address)
            return task_rows(launch * 1000), first_reports(work, launch)
        finally:
            ray.shutdown()
            cluster.shutdown()


def show(t: float | None) -> str:
    return "-" if t is None else f"{t:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--modes", nargs="+", default=["on", "off"], choices=["on", "off"], help="resources.local_mode")
    parser.add_argument("--trials", type=int, nargs="+", default=[1, 2], choices=[1, 2], help="trials starting together")
    args = parser.parse_args()

    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    os.environ["PYTHONPATH"] = str(REPO)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
        export_sketch_csv(images, targets, classes, Path(tmp) / "data", test_fraction=0.2, seed=0)
        for mode in args.modes:
            for trials in args.trials:
                rows, reports = timeline(Path(tmp) / "data", args.model, mode, trials)
                print(f"\nlocal_mode {mode}, {trials} trial(s) of {args.model} (1 epoch), 32 px, {os.cpu_count()} cores; "
                      f"seconds after `python -m orchestrator.run`")
                print(f"{'submitted':>9} {'running':>8} {'ended':>7}  what")
                for _, _, opened in reports:
                    print(f"{'':>9} {show(opened):>8} {'':>7}  driver: a trial's MLflow run opened (Tune started it)")
                for submitted, running, ended, name in rows:
                    print(f"{show(submitted):>9} {show(running):>8} {show(ended):>7}  {name}")
                for report, epoch, _ in reports:
                    print(f"{'':>9} {show(report):>8} {'':>7}  driver: first epoch report logged (that epoch took {epoch:.1f} s)")
                summary.append((mode, trials, max(report - epoch for report, epoch, _ in reports)))
    print("\nlaunch -> first epoch report, minus that epoch (the last of the trials starting together):")
    for mode, trials, seconds in summary:
        print(f"  local_mode {mode:<3}  {trials} trial(s): {seconds:5.1f} s")


if __name__ == "__main__":
    main()
