"""A grid of the Sketch competition's shape, end to end: what disk, memory and time to rent.

Writes a data set of the Sketch competition's shape in its layout (sketch_csv: train.csv, train/,
test.csv, test/): 500 classes, 15,000 training and 10,000 test JPEGs of 600-1000 px a side (~800),
mixed modes (RGB, L, CMYK) and aspect ratios. The drawings are quickdraw10's; 500 distinct classes
come from its 10 drawing classes x 50 looks (the 8 rotations and mirrorings x 7 ink colours, the
first 50), so a class is learnable from the image alone. Then it runs, with a fresh image cache and
MLflow store:

  1. `python -m orchestrator.run grid.yaml --dry-run`        (the plan: reads and checks 25,000 rows)
  2. `python -m orchestrator.run grid.yaml`                  (fold 0 of 5, two configs of a small model
                                                              at 224 px, `--epochs` each; ASHA)
  3. `python -m orchestrator.ensemble grid.yaml`             (fits the ensemble, writes the submission)

and prints: the dry run's time; the image cache's build time and size; the driver's and the
largest Ray worker's peak memory (RSS, sampled every 0.5 s); the epoch's time split into waiting
for data, the training steps, validation and the checkpoint (the trials' own figures, from
MLflow); insight's and the ensemble's times at 500 classes; and the disk the grid leaves
(storage, MLflow, the image cache).

    python benchmarks/sketch_scale.py [--model mobilenetv3_small_100] [--epochs 1] [--keep DIR]

`--keep DIR` keeps the data set (and everything else) in DIR, and reuses a data set found there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"
CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 30, 20
INKS = [(0, 0, 0), (200, 30, 30), (30, 140, 40), (30, 60, 200), (200, 120, 0), (140, 30, 160), (0, 140, 150)]


# ------------------------------------------------------------------------------------------ the data set


def looks() -> list[tuple[int, bool, tuple[int, int, int]]]:
    """The first 50 of (quarter turns, mirrored, ink): 8 orientations x 7 inks."""
    return [(turns, mirror, ink) for ink in INKS for mirror in (False, True) for turns in range(4)][:CLASSES // 10]


def draw(bitmap: np.ndarray, look: tuple[int, bool, tuple[int, int, int]], rng: np.random.Generator):
    """One ~800 px image: the doodle in a look, scaled onto paper of a random size, in a random JPEG mode."""
    from PIL import Image

    turns, mirror, ink = look
    strokes = np.rot90(bitmap, turns)
    strokes = strokes[:, ::-1] if mirror else strokes
    width, height = (int(v) for v in rng.integers(600, 1001, size=2))
    side = int(min(width, height) * rng.uniform(0.6, 0.9))
    alpha = np.asarray(Image.fromarray(np.ascontiguousarray(strokes)).resize((side, side), Image.BICUBIC), np.float32) / 255
    paper = np.full((height, width, 3), 255, np.float32)
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    patch = paper[top:top + side, left:left + side]
    paper[top:top + side, left:left + side] = patch * (1 - alpha[..., None]) + np.asarray(ink, np.float32) * alpha[..., None]
    image = Image.fromarray(paper.astype(np.uint8))
    mode = rng.choice(["RGB", "RGB", "RGB", "L", "CMYK"])
    return image.convert(mode)


def write_some(jobs: list[tuple[str, int, int, int]], bitmaps: np.ndarray, root: str) -> int:
    """Write (relative path, drawing index, look index, seed) jobs as JPEGs under root."""
    all_looks = looks()
    for rel, drawing, look, seed in jobs:
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(bitmaps[drawing], all_looks[look], np.random.default_rng(seed)).save(path, quality=90)
    return len(jobs)


def write_dataset(root: Path, workers: int) -> float:
    """The Sketch-shaped data set under root (skipped when root/test.csv exists); returns seconds taken."""
    if (root / "test.csv").is_file():
        return 0.0
    start = time.monotonic()
    files = sorted(QUICKDRAW.glob("*.npy"))
    bitmaps = np.concatenate([np.load(f) for f in files])  # (10 x 1000, 28, 28), white strokes on black
    names = [f.stem for f in files]
    rng = np.random.default_rng(0)
    train_rows, test_rows, jobs = [], [], []
    for target in range(CLASSES):  # class names sort as the targets do (the sketch_csv contract)
        base, look = divmod(target, CLASSES // 10)
        drawings = base * 1000 + rng.choice(1000, TRAIN_PER_CLASS + TEST_PER_CLASS, replace=False)
        name = f"{names[base]}_{look:02d}"
        for i, drawing in enumerate(drawings):
            split = "train" if i < TRAIN_PER_CLASS else "test"
            rel = f"{name}/sketch_{i}.JPEG" if split == "train" else f"{target * 100 + i:06d}.JPEG"
            jobs.append((f"{split}/{rel}", int(drawing), look, int(rng.integers(2**31))))
            (train_rows if split == "train" else test_rows).append((name, rel, target))
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    chunks = [jobs[i::workers * 8] for i in range(workers * 8)]
    with ProcessPoolExecutor(workers) as pool:
        done = 0
        for count in pool.map(write_some, chunks, [bitmaps] * len(chunks), [str(partial)] * len(chunks)):
            done += count
            print(f"\r  writing the data set: {done}/{len(jobs)} JPEGs", end="", flush=True)
    print()
    pd.DataFrame(train_rows, columns=["class_name", "image_path", "target"]).to_csv(partial / "train.csv", index=False)
    test = pd.DataFrame(test_rows, columns=["class_name", "image_path", "target"])
    test[["image_path"]].to_csv(partial / "test.csv", index=False)
    test.to_csv(partial / "test_labels.csv", index=False)
    partial.rename(root)
    return time.monotonic() - start


# ------------------------------------------------------------------------------------------ the grid


def grid(root: Path, model: str, epochs: int) -> dict:
    return {
        "name": "sketch-scale", "seed": 42,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": 224,
                 "folds": {"kind": "stratified", "n_splits": 5, "use": [0]}},
        "models": [{"name": model}],
        "train": {"epochs": epochs, "batch_size": 64, "augment": "sketch_light",
                  "optimizer": {"name": "adamw", "lr": 2.0e-3}, "scheduler": {"name": "cosine", "warmup_epochs": 0}},
        "search": {"train.optimizer.lr": {"grid": [2.0e-3, 4.0e-3]}},
        "scheduler": {"kind": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1},
        "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
        "tracking": {"uri": "sqlite:///mlflow.db", "storage": "ray_results"},
        "ensemble": {"top_k": 2, "method": "hill_climb", "output": "submission.csv"},
        "insight": {"gallery": 16, "top_confusions": 30, "gradcam_configs": 0},
    }


class PeakMemory:
    """Peak memory of one process (the driver) and of the largest Ray worker process, sampled every 0.5 s: RSS,
    and its anonymous part (heap, tensors: RSS also counts the pages of the image cache a trial maps, which
    are the node's page cache, shared by its trials, and dropped under memory pressure)."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peaks = {"driver rss": 0, "driver anon": 0, "worker rss": 0, "worker anon": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _take(self, who: str, process) -> None:
        import psutil

        with contextlib.suppress(psutil.Error, OSError, ValueError):
            status = Path(f"/proc/{process.pid}/status").read_text()
            anon = int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) * 1024
            self.peaks[f"{who} rss"] = max(self.peaks[f"{who} rss"], process.memory_info().rss)
            self.peaks[f"{who} anon"] = max(self.peaks[f"{who} anon"], anon)

    def _sample(self) -> None:
        import psutil

        while not self.stop.wait(0.5):
            self._take("driver", self.process)
            for proc in psutil.process_iter(["cmdline"]):
                if " ".join(proc.info["cmdline"] or []).startswith("ray::"):
                    self._take("worker", proc)

    def close(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        return self.peaks


def timed(command: list[str], cwd: Path, env: dict, log: Path, memory: bool = False) -> tuple[float, list, dict]:
    """Run `command`; (its seconds, its output lines with their times since start, peak memory (PeakMemory))."""
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = PeakMemory(process.pid) if memory else None
    lines = []
    with log.open("a") as out:
        for line in process.stdout:
            lines.append((time.monotonic() - start, line.rstrip().split("\r")[-1]))  # a progress bar's last state
            out.write(line)
    if process.wait() != 0:
        sys.exit(f"{' '.join(command)} failed (exit {process.returncode}): see {log}")
    return time.monotonic() - start, lines, peak.close() if peak else {}


def cache_seconds(lines: list[tuple[float, str]]) -> float:
    """The image cache builds' seconds: the elapsed time of each finished decoding bar (tqdm's [mm:ss<...)."""
    done = [re.search(r"100%.*\[(\d+):(\d+)<", line) for _, line in lines if line.startswith("decoding")]
    return sum(int(m.group(1)) * 60 + int(m.group(2)) for m in done if m)


def epoch_split(work: Path, train_rows: int) -> dict[str, float]:
    """Medians over the trials' epochs of data wait, steps, validation and checkpoint seconds, from MLflow."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sketch-scale")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("fold") is not None]
    parts: dict[str, list[float]] = {"epoch": [], "data": [], "steps": [], "validation": [], "checkpoint": [], "img/s": []}
    for run in runs:
        history = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                   for key in ("epoch_time_s", "images_per_s", "data_wait_s", "checkpoint_s")}
        for step, epoch_s in history["epoch_time_s"].items():
            train_s = train_rows / history["images_per_s"][step]
            parts["epoch"].append(epoch_s)
            parts["img/s"].append(history["images_per_s"][step])
            parts["data"].append(history["data_wait_s"][step])
            parts["steps"].append(train_s - history["data_wait_s"][step])
            parts["validation"].append(epoch_s - train_s)
            parts["checkpoint"].append(history["checkpoint_s"].get(step, 0.0))
    return {k: statistics.median(v) for k, v in parts.items() if v}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenetv3_small_100")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="a folder to keep the data set and the run in (reused)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sketch-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "sketch"
    cpus = os.cpu_count() or 1
    wrote = write_dataset(root, cpus)
    images = du(root)
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    (run_dir / "grid.yaml").write_text(yaml.safe_dump(grid(root, args.model, args.epochs), sort_keys=False))
    env = {**os.environ, "ORCHESTRATOR_CACHE": str(run_dir / "image-cache")}
    log = run_dir / "output.log"
    dry_s, _, _ = timed([sys.executable, "-m", "orchestrator.run", "grid.yaml", "--dry-run"], run_dir, env, log)
    run_s, lines, peaks = timed([sys.executable, "-m", "orchestrator.run", "grid.yaml"], run_dir, env,
                                                   log, memory=True)
    ensemble_s, ensemble_lines, _ = timed([sys.executable, "-m", "orchestrator.ensemble", "grid.yaml"], run_dir, env, log)
    cache_s = cache_seconds(lines)
    insight = next((float(m.group(1)) for _, line in lines if (m := re.search(r"insight: done in (\d+) s", line))), float("nan"))
    train_rows = int(CLASSES * TRAIN_PER_CLASS * 4 / 5)
    split = epoch_split(run_dir, train_rows)
    storage, cache_bytes = du(run_dir / "ray_results"), du(run_dir / "image-cache")
    mlflow_bytes = du(run_dir) - storage - cache_bytes - du(log)  # the store and its artifacts (and the submission)
    score = next((line for _, line in ensemble_lines if "accuracy" in line.lower() or "score" in line.lower()), "")
    print(f"\nSketch-shaped grid: {CLASSES} classes, {CLASSES * TRAIN_PER_CLASS:,} train + {CLASSES * TEST_PER_CLASS:,} test "
          f"JPEGs ({images / 2**30:.2f} GiB{f', written in {wrote:.0f} s' if wrote else ', reused'}), {args.model} at 224 px, "
          f"fold 0 of 5, 2 configs x {args.epochs} epoch(s), {cpus} CPUs")
    rows = [
        ("dry run (plan, 25,000 rows checked)", f"{dry_s:.1f} s"),
        ("image cache build (train + test, 224 px)", f"{cache_s:.0f} s, {cache_bytes / 2**30:.2f} GiB"),
        ("driver peak memory: RSS / anonymous", f"{peaks['driver rss'] / 2**30:.2f} / {peaks['driver anon'] / 2**30:.2f} GiB"),
        ("largest Ray worker peak: RSS / anonymous", f"{peaks['worker rss'] / 2**30:.2f} / {peaks['worker anon'] / 2**30:.2f} GiB"),
        ("epoch (median over trials)", (f"{split.get('epoch', float('nan')):.0f} s at {split.get('img/s', float('nan')):.0f} img/s "
                                       f"per trial ({cpus} CPUs shared by 2 trials)")),
        ("  of which waiting for data", f"{split.get('data', float('nan')):.1f} s"),
        ("  of which training steps", f"{split.get('steps', float('nan')):.1f} s"),
        ("  of which validation", f"{split.get('validation', float('nan')):.1f} s"),
        ("  checkpoint (held the training)", f"{split.get('checkpoint', float('nan')):.2f} s"),
        ("insight (500 classes)", f"{insight:.0f} s"),
        ("ensemble job (fit + submission)", f"{ensemble_s:.0f} s"),
        ("the whole grid command", f"{run_s:.0f} s"),
        ("disk left: storage / MLflow / image cache", (f"{storage / 2**20:.0f} MiB / {mlflow_bytes / 2**20:.0f} MiB / "
                                                      f"{cache_bytes / 2**30:.2f} GiB")),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in rows))
    if score:
        print(f"  ensemble: {score.strip()}")
    print(f"(output of the three commands: {log})")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
