"""The csv source against the glue-code route, on one Kaggle-layout competition built from quickdraw10.

    python benchmarks/csv_source.py [--per-class 300] [--epochs 4] [--seeds 2]

The competition: train.csv (image_id,label: class names, ids without ".png"), train_images/, test_images/,
sample_submission.csv (image_id,label in a shuffled order), and held-out labels the tool never fits on.

- csv route: `data.source: csv` on that root; the ensemble writes the submission itself.
- glue route: what a user wrote before the csv source: symlinks into the sketch_csv layout with target = the
  index of the label among the sorted names, then the ID,image_path,target submission mapped back to names and
  reordered to sample_submission.csv.

The same grid (models, folds, epochs, seed) runs both ways; printed per seed and as medians: held-out
accuracy and log loss of each route's ensemble, and how many submitted labels the two routes share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from common import QUICKDRAW, cli


def glue(competition: Path, target: Path) -> None:
    """The user's glue, in: the Kaggle layout as sketch_csv (symlinks, targets as sorted-name indexes)."""
    train = pd.read_csv(competition / "train.csv", dtype=str)
    classes = sorted(train["label"].unique())
    (target / "train").mkdir(parents=True)
    (target / "test").mkdir()
    for split, frame in (("train", train), ("test", pd.read_csv(competition / "sample_submission.csv", dtype=str))):
        for image_id in frame["image_id"]:
            os.symlink(competition / f"{split}_images" / f"{image_id}.png", target / split / f"{image_id}.png")
    pd.DataFrame({"class_name": train["label"], "image_path": train["image_id"] + ".png",
                  "target": train["label"].map({c: k for k, c in enumerate(classes)})}).to_csv(target / "train.csv", index=False)
    sample = pd.read_csv(competition / "sample_submission.csv", dtype=str)
    pd.DataFrame({"image_path": sample["image_id"] + ".png"}).to_csv(target / "test.csv", index=False)
    labels = pd.read_csv(competition / "test_labels.csv", dtype=str)
    pd.DataFrame({"image_path": labels["image_id"] + ".png",
                  "target": labels["label"].map({c: k for k, c in enumerate(classes)})}).to_csv(target / "test_labels.csv", index=False)


def glue_back(submission: Path, competition: Path) -> pd.DataFrame:
    """The user's glue, out: ID,image_path,target -> image_id,label in sample_submission.csv's order."""
    classes = sorted(pd.read_csv(competition / "train.csv", dtype=str)["label"].unique())
    frame = pd.read_csv(submission)
    frame = pd.DataFrame({"image_id": frame["image_path"].str.removesuffix(".png"),
                          "label": [classes[t] for t in frame["target"]]}).set_index("image_id")
    sample = pd.read_csv(competition / "sample_submission.csv", dtype=str)
    return frame.loc[sample["image_id"]].reset_index()


def holdout(folder: Path, name: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    run = client.search_runs([experiment.experiment_id], "tags.`orchestrator.role` = 'ensemble'", max_results=1)[0]
    return run.data.metrics


def one_seed(seed: int, args, work: Path) -> dict[str, float]:
    from orchestrator.data.export import export_kaggle_csv, quickdraw_images

    images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
    competition = work / "competition"
    export_kaggle_csv(images, targets, classes, competition, test_fraction=0.25, seed=seed)
    glue(competition, work / "glued")
    base = {"seed": seed, "models": [{"name": "test_resnet"}, {"name": "test_vit"}],
            "train": {"epochs": args.epochs, "batch_size": 64, "augment": "sketch_light"},
            "scheduler": {"kind": "fifo", "metric": "val_logloss", "mode": "min"},
            "resources": {"max_concurrent_trials": 2}, "ensemble": {"method": "auto"},
            "insight": {"gradcam_configs": 0, "gallery": 0}}
    scores = {}
    for route, data in (("csv", {"source": "csv", "root": str(competition)}),
                        ("glue", {"source": "sketch_csv", "root": str(work / "glued")})):
        folder = work / route
        folder.mkdir()
        grid = folder / "grid.yaml"
        grid.write_text(yaml.safe_dump({"name": f"csv-bench-{route}", **base,
                                        "data": {**data, "image_size": 32, "folds": {"kind": "stratified", "n_splits": 3}}}))
        cli("orchestrator.run", str(grid), cwd=folder)
        cli("orchestrator.ensemble", str(grid), cwd=folder)
        metrics = holdout(folder, f"csv-bench-{route}")
        scores[f"{route}_acc"], scores[f"{route}_logloss"] = metrics["holdout_accuracy"], metrics["holdout_logloss"]
    ours = pd.read_csv(work / "csv" / "submission.csv", dtype=str)
    theirs = glue_back(work / "glue" / "submission.csv", competition)
    sample = pd.read_csv(competition / "sample_submission.csv", dtype=str)
    assert list(ours.columns) == list(sample.columns) and ours["image_id"].tolist() == sample["image_id"].tolist()
    scores["agree"] = float((ours["label"].to_numpy() == theirs["label"].to_numpy()).mean())
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as work:
            os.environ["ORCHESTRATOR_CACHE"] = str(Path(work) / "cache")
            rows.append(one_seed(seed, args, Path(work)))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[-1].items()), flush=True)
    print(f"\nquickdraw10 Kaggle layout, {args.per_class} per class (25% held out), test_resnet + test_vit, 3 folds, "
          f"{args.epochs} epochs, metric val_logloss, ensemble auto; medians of {len(rows)} seeds:")
    print("route   held-out accuracy   held-out log loss")
    for route in ("csv", "glue"):
        print(f"{route:<7} {statistics.median(r[f'{route}_acc'] for r in rows):<19.4f} "
              f"{statistics.median(r[f'{route}_logloss'] for r in rows):.4f}")
    print(f"submitted labels the routes share: {statistics.median(r['agree'] for r in rows):.4f}")


if __name__ == "__main__":
    main()
