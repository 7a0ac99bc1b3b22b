"""One command that proves the GPU path: a real small grid under Ray on this machine's GPUs.

On a machine with NVIDIA GPUs and the project installed (a registry-less one: scripts/pack_wheels.py,
docs/measurements.md), it runs three grids on one local Ray cluster, AMP on (`train.amp: auto`: bf16
where the GPU has it):

  1. one trial per GPU (`gpus_per_worker: 1`);
  2. two trials per GPU (`gpus_per_worker: 0.5`: they share it, at the same time);
  3. with 2 GPUs or more: one DDP trial on 2 GPUs (`workers_per_trial: 2`, NCCL);

and prints per trial: training img/s, GPU utilisation and memory (MLflow's NVML monitor, the trial's
own GPU), the checkpoint's seconds (what it held the training for; its background write), and whether
it FINISHED with its OOF + test predictions. Exit 0 only when every trial did (and phase 2's trials
overlapped in time).

Without CUDA (CI, a laptop) it runs the same on the CPU, Ray declaring one logical GPU that torch cannot
use: phase 1 one trial on it, phase 2 two trials sharing it, phase 3 a 2-worker DDP trial over gloo. That
keeps the scheduling, AMP fallback, placement and reporting paths from rotting where no GPU is.

    python benchmarks/gpu_check.py                       # quickdraw10 at 224 px, resnet50, 2 epochs on GPUs
    python benchmarks/gpu_check.py --model resnet10t --image-size 32 --per-class 30 --epochs 1   (the CPU check)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def phases(gpus: int) -> list[tuple[str, dict, int]]:
    """(title, resources, trials) of each phase on `gpus` GPUs (0: the CPU fallback, one logical GPU)."""
    if gpus == 0:
        return [("one trial on the logical GPU", {"gpus_per_worker": 1}, 1),
                ("two trials sharing it (0.5 each)", {"gpus_per_worker": 0.5}, 2),
                ("DDP: one trial, 2 CPU workers (gloo)", {"gpus_per_worker": 0, "workers_per_trial": 2}, 1)]
    found = [("one trial per GPU", {"gpus_per_worker": 1}, gpus),
             ("two trials per GPU (0.5 each)", {"gpus_per_worker": 0.5}, 2 * gpus)]
    if gpus >= 2:
        found.append(("DDP: one trial on 2 GPUs (NCCL)", {"gpus_per_worker": 1, "workers_per_trial": 2}, 1))
    return found


def grid(name: str, root: Path, args, resources: dict, trials: int, cpus_per_worker: int, uri: str) -> dict:
    lrs = [round(1e-3 * (1 + i), 6) for i in range(trials)]  # one config per trial, fold 0 only
    return {
        "name": name, "seed": 5,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": args.image_size,
                 "folds": {"kind": "stratified", "n_splits": 5, "use": [0]}},
        "models": [{"name": args.model}],
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "amp": "auto", "augment": "sketch_light",
                  "scheduler": {"name": "cosine", "warmup_epochs": 0}},
        **({"search": {"train.optimizer.lr": {"grid": lrs}}} if trials > 1 else {}),
        "scheduler": {"kind": "fifo"},
        "resources": {"cpus_per_worker": cpus_per_worker, "workers_per_trial": 1, **resources},
        "tracking": {"uri": uri, "storage": "ray_results"},
        "insight": {"gradcam_configs": 0, "gallery": 0},
    }


def trial_rows(uri: str, name: str) -> list[dict]:
    """Per trial run of grid `name`: img/s, GPU utilisation and memory, checkpoint seconds, status, times."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    rows = []
    for run in client.search_runs([experiment.experiment_id], max_results=100):
        if run.data.tags.get("orchestrator.role") != "trial":
            continue

        def history(key: str) -> list[float]:
            return [m.value for m in client.get_metric_history(run.info.run_id, key)]

        def median(key: str) -> float:
            values = history(key)
            return statistics.median(values) if values else float("nan")

        memory = history("system/gpu_0_memory_usage_megabytes")
        rows.append({"trial": run.info.run_name, "img/s": median("images_per_s"),
                     "gpu %": median("system/gpu_0_utilization_percentage"),
                     "gpu MB": max(memory) if memory else float("nan"),
                     "ckpt s": median("checkpoint_s"), "write s": median("checkpoint_write_s"),
                     "ok": run.info.status == "FINISHED" and run.data.tags.get("predictions") == "true",
                     "status": run.info.status, "start": run.info.start_time, "end": run.info.end_time})
    return sorted(rows, key=lambda r: r["trial"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--per-class", type=int, default=1000, help="quickdraw10 doodles per class")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--keep", type=Path, help="a folder to keep the runs in")
    args = parser.parse_args()

    import ray
    import torch
    from ray.cluster_utils import Cluster

    from orchestrator.data.export import export_sketch_csv, quickdraw_images
    from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS

    gpus = torch.cuda.device_count()
    cpus = os.cpu_count() or 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "sketch"
    if not (root / "test.csv").is_file():
        export_sketch_csv(*quickdraw_images(QUICKDRAW, per_class=args.per_class), root, test_fraction=0.2, seed=0)
    device = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus)) if gpus else "no CUDA: the CPU, Ray declaring 1 logical GPU"
    amp = "bf16" if gpus and torch.cuda.is_bf16_supported() else "fp32 (AMP auto: off on the CPU)" if not gpus else "off"
    print(f"gpu_check {time.strftime('%Y-%m-%d')}: {device}; torch {torch.__version__}, ray {ray.__version__}, "
          f"{cpus} CPUs; {args.model} at {args.image_size}px, quickdraw10 x {args.per_class} (fold 0 of 5 validates), "
          f"{args.epochs} epoch(s), batch {args.batch_size}, AMP {amp}", flush=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": max(gpus, 1),
                                                            "resources": {TRIAL_SLOTS: SLOT_UNITS}})
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(REPO)}
    all_ok = True
    try:
        for index, (title, resources, trials) in enumerate(phases(gpus), start=1):
            name = f"gpu-check-{index}"
            per_trial = trials * resources.get("workers_per_trial", 1)
            cpus_per_worker = max(1, (cpus - 1) // per_trial) if gpus else 1
            folder = work / name
            folder.mkdir(exist_ok=True)
            (folder / "grid.yaml").write_text(yaml.safe_dump(grid(name, root, args, resources, trials, cpus_per_worker, uri)))
            start = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "orchestrator.run", "grid.yaml", "--address", cluster.address],
                                    cwd=folder, env=env, capture_output=True, text=True, check=False)
            log = folder / "output.log"
            log.write_text(result.stdout + result.stderr)
            rows = trial_rows(uri, name)
            overlap = trials < 2 or resources.get("gpus_per_worker") != 0.5 or \
                max(r["start"] for r in rows) < min(r["end"] or 0 for r in rows)
            ok = result.returncode == 0 and len(rows) == trials and all(r["ok"] for r in rows) and overlap
            all_ok &= ok
            print(f"\n{index}. {title}: {trials} trial(s), exit {result.returncode}, {time.monotonic() - start:.0f} s"
                  f"{'' if overlap else ', the sharing trials did NOT run at the same time'}"
                  f"{'' if result.returncode == 0 else f' (see {log})'}")
            print(f"   {'trial':<16}{'img/s':>8}{'GPU %':>7}{'GPU MB':>8}{'ckpt s':>8}{'write s':>8}  status")
            for r in rows:
                print(f"   {r['trial']:<16}{r['img/s']:8.0f}{r['gpu %']:7.0f}{r['gpu MB']:8.0f}{r['ckpt s']:8.2f}"
                      f"{r['write s']:8.2f}  {r['status']}{', predictions' if r['ok'] else ', NO predictions'}")
    finally:
        cluster.shutdown()
    print(f"\n{'every trial FINISHED with its predictions' if all_ok else 'FAILED: see above'} (runs in {work})")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
