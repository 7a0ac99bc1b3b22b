"""What a tracking-server outage costs a grid: the same grid with and without the MLflow server stopped mid-way.

Both runs use a real `mlflow server` (`python -m orchestrator.tracking.server`) on
127.0.0.1 and quickdraw10 (sketch_csv JPEGs). In the outage run the server is
stopped once the third epoch report is printed and started again `--outage-s`
later. Printed per run: the command's wall time, the trials' held seconds (their
`cost_wall_s` in MLflow, summed), the seconds of epochs and of the driver's callback
in Tune's event loop (the run's time account), epochs reported while the server was
away, the median epoch time inside and outside the outage, and whether every epoch
reached MLflow once.

    python benchmarks/tracking_outage.py [--outage-s 120] [--epochs 30] [--per-class 150]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import QUICKDRAW, REPO, free_port


def server(action: str, state: Path, port: int) -> None:
    extra = ["--port", str(port)] if action == "start" else []
    subprocess.run([sys.executable, "-m", "orchestrator.tracking.server", action, "--state-dir", str(state), *extra],
                   check=True, capture_output=True)


def grid(root: Path, name: str, uri: str, epochs: int) -> dict:
    return {"name": name, "seed": 3,
            "data": {"source": "sketch_csv", "root": str(root), "image_size": 32,
                     "folds": {"kind": "stratified", "n_splits": 3, "use": [0, 1]}},
            "models": [{"name": "resnet10t"}], "train": {"epochs": epochs, "batch_size": 64},
            "scheduler": {"kind": "fifo"}, "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
            "insight": {"gradcam_configs": 0, "gallery": 0}, "tracking": {"uri": uri, "storage": "runs"}}


def run(root: Path, folder: Path, name: str, epochs: int, outage_s: float | None) -> dict:
    """One grid; with `outage_s`, the server is stopped after the third epoch report for that long."""
    folder.mkdir(parents=True)
    port, state = free_port(), folder / "mlflow-server"
    server("start", state, port)
    uri = f"http://127.0.0.1:{port}"
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid(root, name, uri, epochs), sort_keys=False))
    log = folder / "run.log"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.run", "grid.yaml"], cwd=folder,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    window = None
    if outage_s is not None:
        while log.read_text().count("val_acc=") < 3 and process.poll() is None:
            time.sleep(0.2)
        server("stop", state, port)
        window = (time.time(), time.time() + outage_s)
        time.sleep(outage_s)
        server("start", state, port)
    process.wait()
    wall = time.monotonic() - started
    text = log.read_text()
    if process.returncode != 0:
        sys.exit(f"{name}: exit {process.returncode}\n{text[-3000:]}")
    figures = from_mlflow(uri, name, epochs, window)
    server("stop", state, port)
    account = {name: float(m.group(1)) if (m := re.search(rf"{name}\s+([\d.]+) s", text)) else float("nan")
               for name in ("epochs", "driver callback")}
    return {"wall_s": wall, "behind_lines": len(re.findall(r"tracking: MLflow has not taken", text)),
            "epochs_s": account["epochs"], "callback_s": account["driver callback"], **figures}


def from_mlflow(uri: str, name: str, epochs: int, window: tuple[float, float] | None) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("orchestrator.role") == "trial"]
    inside, outside, once = [], [], True
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "epoch_time_s")
        once &= sorted(m.step for m in history) == list(range(1, epochs + 1))
        for m in history:  # a metric's timestamp is when the epoch was reported (the writer keeps it)
            during = window is not None and window[0] <= m.timestamp / 1000 <= window[1]
            (inside if during else outside).append(m.value)
    return {"held_s": sum(r.data.metrics.get("cost_wall_s", 0.0) for r in runs), "epochs_in_outage": len(inside),
            "epoch_s_in": statistics.median(inside) if inside else float("nan"),
            "epoch_s_out": statistics.median(outside) if outside else float("nan"), "each_epoch_once": once}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-s", type=float, default=120)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=150)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "sketch"
        images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
        export_sketch_csv(images, targets, classes, root, test_fraction=0.2, seed=0)
        rows = {"no outage": run(root, Path(scratch) / "steady", "steady", args.epochs, None),
                f"server away {args.outage_s:.0f} s": run(root, Path(scratch) / "outage", "outage", args.epochs,
                                                           args.outage_s)}
    print(f"{'run':<22} {'wall s':>7} {'trials held s':>14} {'epochs s':>9} {'callback s':>11} {'epochs in outage':>17} "
          f"{'epoch s in / out':>17} {'behind lines':>13} {'each epoch once':>16}")
    for label, r in rows.items():
        print(f"{label:<22} {r['wall_s']:7.0f} {r['held_s']:14.0f} {r['epochs_s']:9.1f} {r['callback_s']:11.1f} "
              f"{r['epochs_in_outage']:17d} {r['epoch_s_in']:8.2f} / {r['epoch_s_out']:<6.2f} {r['behind_lines']:13d} "
              f"{r['each_epoch_once']!s:>16}")


if __name__ == "__main__":
    main()
