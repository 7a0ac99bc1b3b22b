"""What checkpoints cost a trial: the seconds they hold the training, written in the background or not.

Runs one trial's loop (run_loop + InTrial, in this process, no Ray) on quickdraw10 written as
sketch_csv JPEGs, for each storage (a local folder; a bucket on a moto_server this script starts on
127.0.0.1) x checkpointing:

- synchronous, every epoch (`every: epoch, background: false`): how every checkpoint was written before;
- background, every epoch (`every: epoch`): a resumable checkpoint each epoch, written off the training path;
- the default (`every: auto`): for a model of 50M parameters or more, the weights of a new best
  epoch between resumable checkpoints every 10 minutes, in the background;

the conditions interleaved round by round. Prints per condition the medians over rounds of: the
epoch (train + validation), what a mid-trial checkpoint held the training for and its share of
the epoch, the background write (serialise + SHA-256 + commit), and the last epoch's checkpoint
(always waited for: the driver reads it).

    python benchmarks/checkpoint_cost.py [--model convnext_base] [--per-class 20] [--image-size 64]
                                         [--epochs 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import QUICKDRAW, free_port


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    """A moto_server on 127.0.0.1 with one bucket; (the process, the bucket's storage URI)."""
    import boto3

    port = free_port()
    process = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    return process, f"s3://bench/checkpoints?endpoint_override=127.0.0.1:{port}&scheme=http"


CONDITIONS = {"synchronous, every epoch": {"every": "epoch", "background": False},
              "background, every epoch": {"every": "epoch"},
              "default (auto)": {}}


def run_trial(root: Path, storage: str, name: str, args, checkpoint: dict) -> list[dict]:
    """The trial's reports (EpochReport dicts) from a fresh start."""
    import orchestrator.train.loop as loop
    from orchestrator.config import parse_grid
    from orchestrator.data.prepare import prepare_data
    from orchestrator.search.plan import plan_trials
    from orchestrator.train.session import InTrial

    grid = parse_grid({
        "name": name, "seed": 1,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": args.image_size, "cache": "off",
                 "folds": {"kind": "stratified", "n_splits": 5, "use": [0]}},
        "models": [{"name": args.model}],
        "train": {"epochs": args.epochs, "batch_size": 32, "augment": "none", "scheduler": {"name": "constant"},
                  "checkpoint": checkpoint},
        "scheduler": {"kind": "fifo"},
        "resources": {"cpus_per_worker": 2, "local_mode": "on"},
        "tracking": {"storage": storage},
    })
    trial = plan_trials(grid, prepare_data(grid).trial_tables)[0].config
    loop.worker_node = lambda: "bench"  # the report names Ray's node; there is none here
    reports: list[dict] = []
    loop.run_loop(trial, InTrial(trial.layout.trial_dir(trial.trial_key), send=reports.append))
    return reports


def summarise(runs: list[list[dict]]) -> dict[str, float]:
    """Medians over every mid-trial epoch of every round (the last epoch apart)."""
    mid = [r for reports in runs for r in reports[:-1]]
    last = [reports[-1] for reports in runs]
    writes = [r["checkpoint_write_s"] for r in mid if r["checkpoint_write_s"] == r["checkpoint_write_s"]]
    return {"epoch_s": statistics.median(r["epoch_time_s"] for r in mid),
            "held_s": statistics.median(r["checkpoint_s"] for r in mid),
            "share": statistics.median(r["checkpoint_s"] / r["epoch_time_s"] for r in mid),
            "write_s": statistics.median(writes) if writes else float("nan"),
            "last_s": statistics.median(r["checkpoint_s"] for r in last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="convnext_base")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--storage", choices=["local", "s3", "both"], default="both")
    args = parser.parse_args()

    import timm
    import torch

    from orchestrator.data.export import export_sketch_csv, quickdraw_images
    from orchestrator.storage import join

    work = Path(tempfile.mkdtemp(prefix="checkpoint-cost-"))
    root = work / "sketch"
    export_sketch_csv(*quickdraw_images(QUICKDRAW, per_class=args.per_class), root, test_fraction=0.2, seed=0)
    parameters = sum(p.numel() for p in timm.create_model(args.model, num_classes=10).parameters())
    storages = {}
    moto = None
    if args.storage in ("local", "both"):
        storages["local disk"] = str(work / "storage")
    if args.storage in ("s3", "both"):
        if shutil.which("moto_server") is None:
            sys.exit("moto_server not found: pip install 'moto[server]'")
        moto, storages["S3 (moto_server)"] = start_moto(work / "moto.log")
    print(f"{args.model} ({parameters / 1e6:.0f}M parameters, a full checkpoint ~{parameters * 12 / 1e9:.2f} GB with AdamW), "
          f"{args.per_class * 8} training images of {args.image_size}px a fold, {args.epochs} epochs x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads", flush=True)
    results: dict[tuple[str, str], list[list[dict]]] = {}
    try:
        for round_ in range(args.rounds):
            for where, storage in storages.items():
                for index, (condition, checkpoint) in enumerate(CONDITIONS.items()):
                    name = f"r{round_}-c{index}"
                    reports = run_trial(root, join(storage, name), name, args, checkpoint)
                    results.setdefault((where, condition), []).append(reports)
                    print(f"  round {round_ + 1} {where:<18} {condition:<25} epochs "
                          f"{[round(r['epoch_time_s'], 1) for r in reports]} s, held {[round(r['checkpoint_s'], 2) for r in reports]} s",
                          flush=True)
    finally:
        if moto is not None:
            moto.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'storage':<18} {'checkpoints':<25} {'epoch s':>8} {'held s':>7} {'of epoch':>9} {'write s':>8} {'last s':>7}")
    for (where, condition), runs in results.items():
        s = summarise(runs)
        print(f"{where:<18} {condition:<25} {s['epoch_s']:8.2f} {s['held_s']:7.2f} "
              f"{s['share']:9.1%} {s['write_s']:8.2f} {s['last_s']:7.2f}")
    print("held: what a mid-trial checkpoint held the training for; write: the background write (serialise, SHA-256, "
          "commit); last: the last epoch's checkpoint (weights + bookkeeping, waited for)")


if __name__ == "__main__":
    main()
