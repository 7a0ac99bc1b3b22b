"""Full grid (fifo) vs plain ASHA vs fold-aware ASHA on the same configs x folds.

Each method runs the same grid on quickdraw10 (sketch_csv JPEGs) through the real
CLI, in its own folder (own MLflow store, own Ray storage). Printed per method:
epochs trained, wall time (of the command and of its scheduled part) against the
ideal (its epoch seconds / slots), trials paused-and-resumed, the config it picks
(best mean fold score among configs with every fold finished), that config's
full-fold CV score as measured by the full grid (when fifo runs), and surviving
configs with a missing fold.

    python benchmarks/fold_asha.py [--per-class 150] [--epochs 9] [--methods fifo asha fold_asha]

Figures vary run to run: ASHA is asynchronous, so which configs reach a rung
first decides what they are compared with.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"
LRS = [1.0e-2, 3.0e-3, 1.0e-3, 3.0e-4]


def grid(root: Path, method: str, epochs: int, slots: int) -> dict:
    return {
        "name": f"bench-{method}", "seed": 11,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": 32, "folds": {"kind": "stratified", "n_splits": 3}},
        "models": [{"name": "resnet10t"}, {"name": "test_vit"}],
        "train": {"epochs": epochs, "batch_size": 64, "optimizer": {"name": "adamw", "lr": 1.0e-3},
                  "scheduler": {"name": "cosine", "warmup_epochs": 0}, "augment": "sketch_light"},
        "search": {"train.optimizer.lr": {"grid": LRS}},
        "scheduler": {"kind": method, "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 3},
        "resources": {"cpus_per_worker": 1, "max_concurrent_trials": slots},
    }


def run_method(method: str, root: Path, folder: Path, epochs: int, slots: int) -> dict:
    folder.mkdir(parents=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid(root, method, epochs, slots), sort_keys=False))
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "orchestrator.run", "grid.yaml"], cwd=folder, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"{method}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return {"wall_s": wall, "grid_s": grid_wall(folder, method), "restarts": out.stdout.count("started again after epoch"),
            "trials": read_trials(folder, method)}


def grid_wall(folder: Path, method: str) -> float:
    """The scheduled part of the command's wall: Tune's start to its end (the parent run's time_wall_s)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"bench-{method}")
    parent, = client.search_runs([experiment.experiment_id], "tags.`orchestrator.role` = 'grid'")
    return parent.data.metrics["time_wall_s"]


def read_trials(folder: Path, method: str) -> list[dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"bench-{method}")
    trials = []
    for run in client.search_runs([experiment.experiment_id], "tags.`orchestrator.role` = 'trial'", max_results=1000):
        tags = run.data.tags
        epoch_s = sum(m.value for m in client.get_metric_history(run.info.run_id, "epoch_time_s"))
        trials.append({"config_id": tags["config_id"], "model": tags["model"], "fold": int(tags["fold"]),
                       "status": tags["status"], "epochs": int(tags["epochs"]), "best": run.data.metrics.get("best_val_acc"),
                       "lr": float(run.data.params["train.optimizer.lr"]), "epoch_s": epoch_s})
    return trials


def by_config(trials: list[dict]) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for t in trials:
        grouped[t["config_id"]].append(t)
    return grouped


def summarize(method: str, result: dict, cv: dict[str, float], folds: int, slots: int) -> dict:
    """The method's figures; `ideal_s`: its epochs' own seconds spread over the slots (no start-up, no waiting)."""
    configs = by_config(result["trials"])
    complete = {c: ts for c, ts in configs.items() if len(ts) == folds and all(t["status"] == "FINISHED" for t in ts)}
    candidates = complete or configs  # plain ASHA may leave no config with every fold finished
    pick = max(candidates, key=lambda c: statistics.mean(t["best"] or 0 for t in candidates[c]))
    ideal = sum(t["epoch_s"] for t in result["trials"]) / slots
    holes = [c for c, ts in configs.items() if any(t["status"] == "FINISHED" for t in ts)
             and any(t["status"] != "FINISHED" for t in ts)]
    label = f"{configs[pick][0]['model']} lr={configs[pick][0]['lr']:g}"
    return {"method": method, "epochs": sum(t["epochs"] for t in result["trials"]), "wall_s": round(result["wall_s"]),
            "ideal_s": round(ideal), "wall_over_ideal": result["wall_s"] / ideal, "grid_s": round(result["grid_s"]),
            "grid_over_ideal": result["grid_s"] / ideal,
            "restarts": result["restarts"], "pick": label, "pick_cv": cv.get(pick, float("nan")), "complete_configs": len(complete),
            "configs_with_holes": len(holes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--slots", type=int, default=2, help="trials at once (max_concurrent_trials)")
    parser.add_argument("--methods", nargs="+", default=["fifo", "asha", "fold_asha"])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here too")
    args = parser.parse_args()
    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    work = Path(tempfile.mkdtemp(prefix="fold-asha-bench-"))
    images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
    export_sketch_csv(images, targets, classes, work / "data", test_fraction=0.2, seed=0)
    results = {}
    for method in args.methods:
        print(f"running {method} ...", flush=True)
        results[method] = run_method(method, work / "data", work / method, args.epochs, args.slots)
    fifo = results.get("fifo")  # the full grid measures every config's CV score (without it: no CV columns)
    cv = {c: statistics.mean(t["best"] for t in ts) for c, ts in by_config(fifo["trials"]).items()} if fifo else {}
    rows = [summarize(m, results[m], cv, folds=3, slots=args.slots) for m in args.methods]
    full = next((r for r in rows if r["method"] == "fifo"), None)
    print(f"\n{len(LRS) * 2} configs x 3 folds, {args.epochs} epochs, {args.slots} trials at once, quickdraw10 "
          f"{args.per_class}/class; CV score = mean over folds of the best val_acc, from the full grid\n")
    print(f"{'method':<10} {'epochs':>7} {'of full':>8} {'wall s':>7} {'grid s':>7} {'ideal s':>8} {'wall/ideal':>10} "
          f"{'grid/ideal':>10} {'restarts':>9}  "
          f"{'pick':<22} {'pick CV':>8} {'gap pts':>8} {'holes':>6}")
    for r in rows:
        share = f"{r['epochs'] / full['epochs']:.0%}" if full else "-"
        gap = 100 * (full["pick_cv"] - r["pick_cv"]) if full else float("nan")
        print(f"{r['method']:<10} {r['epochs']:>7} {share:>8} {r['wall_s']:>7} {r['grid_s']:>7} {r['ideal_s']:>8} "
              f"{r['wall_over_ideal']:>10.2f} {r['grid_over_ideal']:>10.2f} {r['restarts']:>9}  {r['pick']:<22} {r['pick_cv']:>8.4f} {gap:>8.2f} {r['configs_with_holes']:>6}")
    print("\nwall: the whole command; grid: its scheduled part (Tune's start to end, without the driver's start-up "
          "and exit)")
    print("ideal: the method's epoch seconds (train + validation, as the workers measured them) / trial slots")
    print("holes: configs with some folds finished and others stopped (their OOF predictions have gaps)")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "cv": cv}, indent=2))
    print(f"(work folder: {work})")


if __name__ == "__main__":
    main()
