"""A multi-label competition, held out: the tool's grid and ensemble against a plain BCE loop at threshold 0.5.

    python benchmarks/multilabel.py [--count 2000] [--epochs 6] [--seeds 2]

Per seed: quickdraw10 drawings composed into `count` images of 1-3 drawings each (their classes as tags,
export_multilabel_csv), a quarter held out (their tags never used for fitting).

- tool: `data.task: multilabel` (csv source) at 64 px with test_resnet + test_vit, 3 folds, bce, the ensemble's blend
  and its cross-validated tag thresholds; also its blend at 0.5 (every tag, no at-least-one rule), which
  gives the thresholds' share of the gain;
- plain: test_resnet trained once on every training row (AdamW, one-cycle, BCE, flips), tags at 0.5.

Printed per seed and as medians: held-out F1 per image (the default metric), F2 per image and mAP.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import QUICKDRAW, cli, train_plain


def truth(root: Path, classes: list[str], ids: list[str]) -> np.ndarray:
    labels = pd.read_csv(root / "test_labels.csv").set_index("image_id")["tags"].reindex(ids)
    index = {name: k for k, name in enumerate(classes)}
    hot = np.zeros((len(ids), len(classes)))
    for row, tags in enumerate(labels):
        hot[row, [index[t] for t in tags.split()]] = 1
    return hot


def scores(called: np.ndarray, probs: np.ndarray, hot: np.ndarray) -> dict[str, float]:
    from orchestrator.metrics import f1_samples, f2_samples, mean_average_precision

    decided = called.astype(np.float64)
    return {"f1": f1_samples(decided, hot), "f2": f2_samples(decided, hot), "map": mean_average_precision(probs, hot)}


def tool(root: Path, work: Path, args, seed: int) -> dict[str, float]:
    """The grid and its ensemble, scored held out at the tuned thresholds and at 0.5."""
    from mlflow.tracking import MlflowClient

    grid = {"name": "multilabel-bench", "seed": seed,
            "data": {"source": "csv", "root": str(root), "task": "multilabel", "image_size": 64,
                     "folds": {"kind": "stratified", "n_splits": 3}},
            "models": [{"name": "test_resnet"}, {"name": "test_vit"}],
            "train": {"epochs": args.epochs, "batch_size": 64, "augment": "plain",
                      **({"loss": {"name": "bce", "label_smoothing": args.label_smoothing}}
                         if args.label_smoothing is not None else {})},
            "scheduler": {"kind": "fifo"}, "resources": {"max_concurrent_trials": 2},
            "ensemble": {"method": "auto"}, "insight": {"gradcam_configs": 0, "gallery": 0}}
    (work / "grid.yaml").write_text(yaml.safe_dump(grid))
    cli("orchestrator.run", "grid.yaml", cwd=work)
    cli("orchestrator.ensemble", "grid.yaml", cwd=work)
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("multilabel-bench")
    run = client.search_runs([experiment.experiment_id], "tags.`orchestrator.role` = 'ensemble'", max_results=1)[0]
    probs_frame = pd.read_parquet(client.download_artifacts(run.info.run_id, "ensemble_test.parquet", str(work)))
    submission = pd.read_csv(work / "submission.csv")
    classes = sorted({t for tags in pd.read_csv(root / "train.csv")["tags"] for t in tags.split()})
    probs = probs_frame.sort_values("row_id").filter(like="prob_").to_numpy()
    ids = submission["image_id"].tolist()
    hot = truth(root, classes, ids)
    called = np.zeros_like(hot, dtype=bool)
    for row, tags in enumerate(submission["tags"]):
        called[row, [classes.index(t) for t in tags.split()]] = True
    tuned, at_half = scores(called, probs, hot), scores(probs >= 0.5, probs, hot)
    return {**{f"tool_{k}": v for k, v in tuned.items()}, **{f"half_{k}": v for k, v in at_half.items()}}


def plain(root: Path, args, seed: int) -> dict[str, float]:
    """test_resnet once on every training row: AdamW 2e-3, one-cycle, BCE, flips; tags at 0.5."""
    import timm
    import torch
    from PIL import Image

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = pd.read_csv(root / "train.csv")
    test = pd.read_csv(root / "sample_submission.csv")
    classes = sorted({t for tags in train["tags"] for t in tags.split()})

    def load(folder: str, ids) -> torch.Tensor:
        images = np.stack([np.asarray(Image.open(root / folder / f"{i}.png").convert("RGB").resize((64, 64))) for i in ids])
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255

    x, x_test = load("train_images", train["image_id"]), load("test_images", test["image_id"])
    y = torch.zeros(len(train), len(classes))
    for row, tags in enumerate(train["tags"]):
        y[row, [classes.index(t) for t in tags.split()]] = 1
    model = timm.create_model("test_resnet", num_classes=len(classes))
    train_plain(model, x, y, torch.nn.BCEWithLogitsLoss(), np.arange(len(train)), args.epochs, 2e-3, rng.permutation)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(x_test[i:i + 256]).sigmoid() for i in range(0, len(x_test), 256)]).numpy()
    return {f"plain_{k}": v for k, v in scores(probs >= 0.5, probs, truth(root, classes, test["image_id"].tolist())).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--label-smoothing", type=float, default=None, help="the tool's BCE (default: its default)")
    args = parser.parse_args()
    from orchestrator.data.export import export_multilabel_csv, quickdraw_images

    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            os.environ["ORCHESTRATOR_CACHE"] = str(work / "cache")
            images, targets, classes = quickdraw_images(QUICKDRAW, per_class=400)
            export_multilabel_csv(images, targets, classes, work / "data", count=args.count, test_fraction=0.25, seed=seed)
            rows.append({**tool(work / "data", work, args, seed), **plain(work / "data", args, seed)})
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[-1].items()), flush=True)
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"\nquickdraw10 multi-label, {args.count} images (25% held out), {args.epochs} epochs; medians of {len(rows)} "
          f"seeds:\nwhat                                          F1/image  F2/image  mAP")
    for key, what in (("plain", "plain BCE loop, test_resnet on all rows, 0.5"), ("half", "tool: grid + ensemble, tags at 0.5"),
                      ("tool", "tool: grid + ensemble, tuned thresholds")):
        print(f"{what:<46}{median[f'{key}_f1']:<10.4f}{median[f'{key}_f2']:<10.4f}{median[f'{key}_map']:.4f}")
    gain = median["tool_f1"] - median["plain_f1"]
    share = (median["tool_f1"] - median["half_f1"]) / gain if gain else float("nan")
    print(f"F1/image gain over the plain loop: {gain:+.4f}, of which the thresholds {share:.0%}")


if __name__ == "__main__":
    main()
