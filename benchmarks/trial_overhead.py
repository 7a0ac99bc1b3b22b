"""What the orchestrator costs on top of a bare PyTorch + timm loop.

Measures, on quickdraw10 written as sketch_csv JPEGs:
  * a bare loop: same model, data (same Dataset + transforms, decoding every epoch), batch size, threads;
  * a bare loop over the same rows decoded once into one tensor, no augmentation (the floor of the work);
  * the trial's own loop (`run_loop`, with the session it has in local mode) in this
    process, without Ray: what the orchestrator's code costs apart from the processes around it;
  * one orchestrated trial (Ray Tune -> Ray Train TorchTrainer -> MLflow) of the same;
and prints images/s of all and the trial's fixed cost (launch -> first epoch report).
`--augment` is the trial's and the first bare loop's pipeline: `none` compares the
trial with the decoded-once loop on equal work (what the orchestrator itself costs);
the default `sketch_light` adds the per-sample augmentation a real grid pays for.

    python benchmarks/trial_overhead.py [--model resnet10t] [--per-class 300] [--epochs 3] [--augment none]
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

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def bare_loop(root: Path, model_name: str, epochs: int, batch: int, image_size: int, threads: int,
              augment: str) -> list[float]:
    """images/s per epoch of a plain timm training loop over fold 0's training rows."""
    import pandas as pd
    import timm
    import torch

    from orchestrator.config import FoldsConfig
    from orchestrator.data.dataset import ImageDataset
    from orchestrator.data.folds import assign_folds
    from orchestrator.data.transforms import Normalize, build_transforms

    torch.set_num_threads(threads)
    train = pd.read_csv(root / "train.csv")
    folds = assign_folds(train, FoldsConfig(kind="stratified", n_splits=5), seed=42)
    rows = train[folds != 0]
    model = timm.create_model(model_name, num_classes=int(train["target"].max()) + 1)
    transform, _ = build_transforms(augment, image_size)
    data = ImageDataset([str(root / "train" / p) for p in rows["image_path"]], rows["target"].tolist(), transform)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    normalize = Normalize((0.5,) * 3, (0.25,) * 3)
    return timed_epochs(model, lambda: ((normalize(images), targets) for images, targets in loader), epochs)


def timed_epochs(model, batches, epochs: int) -> list[float]:
    """images/s per epoch of plain AdamW + cross-entropy steps over `batches()` (a fresh iterable each epoch)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    speeds = []
    for _ in range(epochs):
        model.train()
        start, seen = time.perf_counter(), 0
        for images, targets in batches():
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(targets)
        speeds.append(seen / (time.perf_counter() - start))
    return speeds


def bare_decode_once(root: Path, model_name: str, epochs: int, batch: int, image_size: int, threads: int) -> list[float]:
    """images/s per epoch of a plain loop over fold 0's training rows decoded once into one tensor (no augmentation)."""
    import pandas as pd
    import timm
    import torch

    from orchestrator.config import FoldsConfig
    from orchestrator.data.cache import Framing, read_framed
    from orchestrator.data.folds import assign_folds

    torch.set_num_threads(threads)
    train = pd.read_csv(root / "train.csv")
    rows = train[assign_folds(train, FoldsConfig(kind="stratified", n_splits=5), seed=42) != 0]
    framing = Framing(image_size, pad_square=True, invert=False)
    pixels = np.stack([read_framed(str(root / "train" / p), framing) for p in rows["image_path"]])
    images = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    targets = torch.as_tensor(rows["target"].to_numpy())
    model = timm.create_model(model_name, num_classes=int(train["target"].max()) + 1)

    def batches():
        order = torch.randperm(len(images))
        for first in range(0, len(order) - batch + 1, batch):
            index = order[first:first + batch]
            yield images[index], targets[index]

    return timed_epochs(model, batches, epochs)


def grid_dict(root: Path, model_name: str, epochs: int, batch: int, image_size: int, augment: str) -> dict:
    return {
        "name": "overhead", "seed": 42,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": image_size,
                 "folds": {"kind": "stratified", "n_splits": 5, "use": [0]}},
        "models": [{"name": model_name}],
        "train": {"epochs": epochs, "batch_size": batch, "augment": augment,
                  "scheduler": {"name": "constant"}, "loss": {"name": "cross_entropy"}},
        "scheduler": {"kind": "fifo"},
        "resources": {"cpus_per_worker": 1, "workers_per_trial": 1, "max_concurrent_trials": 1, "local_mode": "on"},
    }


def loop_without_ray(raw: dict, work: Path) -> list[float]:
    """images/s per epoch of the trial's loop (run_loop + InTrial, reports kept in a list) in this process, no Ray."""
    import orchestrator.train.loop as loop
    from orchestrator.config import parse_grid
    from orchestrator.data.prepare import prepare_data
    from orchestrator.search.plan import plan_trials
    from orchestrator.train.session import InTrial

    grid = parse_grid({**raw, "name": "overhead-no-ray", "tracking": {"storage": str(work / "no_ray")}})
    trial = plan_trials(grid, prepare_data(grid).trial_tables)[0].config
    loop.worker_node = lambda: "no-ray"  # the report names Ray's node; there is none here
    reports: list[dict] = []
    loop.run_loop(trial, InTrial(trial.layout.trial_dir(trial.trial_key), send=reports.append))
    return [r["images_per_s"] for r in reports]


def orchestrated(root: Path, model_name: str, epochs: int, batch: int, image_size: int, work: Path,
                 augment: str) -> dict:
    grid = grid_dict(root, model_name, epochs, batch, image_size, augment)
    (work / "grid.yaml").write_text(yaml.safe_dump(grid))
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "orchestrator.run", "grid.yaml"], cwd=work, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("overhead")
    run = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags["orchestrator.role"] == "trial")
    speeds = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "images_per_s"), key=lambda m: m.step)]
    first = min(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
    first_epoch = min(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step).value
    return {"speeds": speeds, "wall": wall, "fixed": (first.timestamp - run.info.start_time) / 1000 - first_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--augment", default="sketch_light", help="the trial's augment preset (none: equal work)")
    args = parser.parse_args()

    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "quickdraw"
        images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
        export_sketch_csv(images, targets, classes, root, test_fraction=0.2, seed=0)
        bare = bare_loop(root, args.model, args.epochs, args.batch, args.image_size, threads=1, augment=args.augment)
        once = bare_decode_once(root, args.model, args.epochs, args.batch, args.image_size, threads=1)
        own = loop_without_ray(grid_dict(root, args.model, args.epochs, args.batch, args.image_size, args.augment), work)
        trial = orchestrated(root, args.model, args.epochs, args.batch, args.image_size, work, args.augment)
    steady = lambda xs: statistics.median(xs[1:] if len(xs) > 1 else xs)  # noqa: E731 - epoch 1 warms up
    print(f"\n{args.model}, {args.image_size}px, batch {args.batch}, 1 thread, quickdraw10 {args.per_class}/class, "
          f"fold 0 of 5, augment {args.augment} (the trial and the first bare loop)")
    print(f"{'':28}{'img/s per epoch':>30}  {'steady img/s':>12}")
    print(f"{'bare PyTorch + timm loop':28}{' '.join(f'{s:7.0f}' for s in bare):>30}  {steady(bare):12.0f}")
    print(f"{'bare loop, decoded once':28}{' '.join(f'{s:7.0f}' for s in once):>30}  {steady(once):12.0f}")
    print(f"{'trial loop, no Ray':28}{' '.join(f'{s:7.0f}' for s in own):>30}  {steady(own):12.0f}")
    print(f"{'orchestrated trial':28}{' '.join(f'{s:7.0f}' for s in trial['speeds']):>30}  {steady(trial['speeds']):12.0f}")
    print(f"trial throughput vs bare loop: {steady(trial['speeds']) / steady(bare):.2f}x; vs the bare loop over images "
          f"decoded once (no augmentation): {steady(trial['speeds']) / steady(once):.2f}x")
    print(f"the trial's loop without Ray vs the bare loop over images decoded once: {steady(own) / steady(once):.2f}x")
    print(f"trial fixed cost (launch -> first epoch report, minus that epoch): {trial['fixed']:.1f} s")
    print(f"whole command (Ray start, data check, 1 trial, predictions, MLflow): {trial['wall']:.1f} s")


if __name__ == "__main__":
    main()
