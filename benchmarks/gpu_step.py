"""The trial's training step and prediction on a GPU, without Ray: what a GPU worker runs between reports.

Runs the same code as a Train worker (build_trial, build_parts, train_one_epoch,
predict_probs with TTA, the checkpoint round trip) on quickdraw10 JPEGs, for each precision
setting, and prints images/s of the second epoch plus validation accuracy.

    python benchmarks/gpu_step.py [--quickdraw DIR] [--model resnet18] [--image-size 64] [--batch 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {  # name -> TrainConfig overrides
    "fp32": {"amp": "off"},
    "auto (bf16 on this GPU)": {"amp": "auto"},
    "fp16 + GradScaler": {"amp": "fp16"},
    "bf16 + channels_last": {"amp": "bf16", "channels_last": True},
    "bf16 + EMA + mixup/cutmix": {"amp": "bf16", "ema": {"decay": 0.99}, "mix": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}},
}


def trial_config(args, root: Path, storage: str, overrides: dict):
    """The TrialConfig a grid with this setting plans for fold 0 (a 20% holdout) of the exported JPEGs."""
    from orchestrator.config import parse_grid
    from orchestrator.data.prepare import prepare_data
    from orchestrator.search.plan import plan_trials

    grid = parse_grid({
        "name": "gpu-step", "seed": 0, "models": [{"name": args.model}],
        "data": {"source": "sketch_csv", "root": str(root), "image_size": args.image_size, "loader_workers": args.workers,
                 "folds": {"kind": "holdout", "n_splits": 5}},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": {"name": "adamw", "lr": 2e-3},
                  "augment": "sketch_light", **overrides},
        "tracking": {"storage": storage},
    })
    return plan_trials(grid, prepare_data(grid).trial_tables)[0].config


def run_setting(name: str, overrides: dict, args, root: Path, device: torch.device) -> str:
    """The Train worker's steps (build_trial, build_parts, train_one_epoch), then predict_probs with TTA."""
    from orchestrator.config import TtaConfig
    from orchestrator.train.checkpoint import load_weights, save_checkpoint
    from orchestrator.train.losses import create_loss
    from orchestrator.train.models import create_model
    from orchestrator.train.optim import create_lr_scheduler, create_optimizer
    from orchestrator.train.predict import predict_probs
    from orchestrator.train.setup import build_trial
    from orchestrator.train.step import build_parts, train_one_epoch, updates_per_epoch

    torch.manual_seed(0)
    trial = trial_config(args, root, tempfile.mkdtemp(), overrides)
    cfg, setup = trial.train, build_trial(trial)
    model = setup.model.to(device)
    train, val, targets = setup.train_loader(), setup.eval_loader(setup.val_rows), setup.val_rows["target"].to_numpy()
    optimizer = create_optimizer(model, cfg.optimizer)
    scheduler = create_lr_scheduler(optimizer, cfg.scheduler, cfg.epochs, updates_per_epoch(len(train), 1), "max")
    parts = build_parts(cfg, model, optimizer, scheduler, create_loss(cfg.loss, setup.class_counts()).to(device), device, 10,
                        setup.normalize)
    rates = []
    for epoch in range(cfg.epochs):
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
        loss, seen, _ = train_one_epoch(model, train, parts, epoch)
        torch.cuda.synchronize() if device.type == "cuda" else None
        rates.append(seen / (time.perf_counter() - start))
        assert np.isfinite(loss), f"{name}: loss {loss}"
        scheduler.step(epoch + 1, 0.0) if scheduler is not None else None
    evaluated = parts.ema.module if parts.ema is not None and parts.evaluate_ema else model
    probs = predict_probs(evaluated, val, device, TtaConfig(hflip=True, scales=[1.0, 1.15]), setup.normalize)
    with tempfile.TemporaryDirectory() as folder:  # the checkpoint round trip a resumed trial makes
        save_checkpoint(Path(folder), evaluated, {"epoch": cfg.epochs})
        fresh = create_model(args.model, 10).to(device)
        load_weights(Path(folder), fresh)
        again = predict_probs(fresh, val, device, normalize=setup.normalize)
    tta_acc, acc = float((probs.argmax(1) == targets).mean()), float((again.argmax(1) == targets).mean())
    return (f"{name:<28} {rates[-1]:>9.0f} img/s (epoch 1: {rates[0]:.0f})   val acc {acc:.3f}, with TTA {tta_acc:.3f}   "
            f"amp={parts.amp_dtype}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickdraw", type=Path, default=REPO.parent / "shared" / "data" / "quickdraw10")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(tempfile.mkdtemp()) / "sketch"
    images, targets, classes = quickdraw_images(args.quickdraw, per_class=args.per_class)
    export_sketch_csv(images, targets, classes, root, test_fraction=0.05, seed=0)  # train/ is used
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}; {args.model} {args.image_size}px batch {args.batch}, "
          f"{len(images)} quickdraw10 images, {args.workers} loader workers")
    for setting, overrides in SETTINGS.items():
        print(run_setting(setting, overrides, args, root, device), flush=True)


if __name__ == "__main__":
    main()
