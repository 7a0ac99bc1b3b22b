"""The competition techniques side by side on quickdraw10: each option against the same baseline, in one run.

Every variant is the same grid (one model, the same folds, fifo so every trial runs
all its epochs) with one option changed, run through the real CLI into one MLflow
experiment; a plain PyTorch loop (AdamW, one-cycle, label smoothing 0.1) trains the
same folds for reference. Per variant it prints OOF accuracy / macro F1 (the
trained folds' validation rows) and held-out accuracy / macro F1 (the test split,
the folds' test probabilities averaged), then the ensemble job's methods and
macro-F1 offsets over all variants, then a pseudo-labelling round taught by that
ensemble.

    python benchmarks/techniques.py [--per-class 250] [--epochs 8] [--variants NAME ...] [--study defaults]
    python benchmarks/techniques.py --study refit --per-class 400 --epochs 6 [--seeds 3]

`--study defaults` runs the recipes the defaults were chosen from instead. Figures
move by a point or two between runs (2,500 images, two folds): compare within one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import train_plain

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"
sys.path.insert(0, str(REPO))

OLD_DEFAULTS = {"scheduler": {"name": "cosine", "warmup_epochs": 0}, "loss": {"label_smoothing": 0.0},
                "optimizer": {"name": "adamw", "lr": 1.0e-3}}

# name -> (what it is, train overrides on top of the tool's defaults); "defaults" sets nothing
TECHNIQUES = {
    "old_defaults": ("the defaults before #14: cosine without warmup, no label smoothing", OLD_DEFAULTS),
    "defaults": ("the grid sets nothing (the tool's defaults)", {}),
    "warm_restarts": ("cosine with 1 warm restart, the second peak at half the lr", {"scheduler": {"restarts": 1, "cycle_decay": 0.5}}),
    "progressive_resize": ("20 px for the first 3 epochs, then the full 28", {"progressive_resize": [{"epochs": [0, 3], "image_size": 20}]}),
    "randaugment_sketch": ("RandAugment, sketch operations (2 per image)", {"augment": "randaugment_sketch"}),
    "autoaugment_sketch": ("AutoAugment-style sketch sub-policies", {"augment": "autoaugment_sketch"}),
    "randaugment_curriculum": ("randaugment_sketch on 0% of images in epoch 1, rising to all by epoch 5",
                               {"augment": "randaugment_sketch", "curriculum": {"start": 0.0, "full_at_epoch": 4}}),
    "sketch_light": ("the sketch_light preset (for reference)", {"augment": "sketch_light"}),
}


def recipe(lr: float, optimizer: str = "adamw", schedule: str = "cosine", warmup: int = 1, smoothing: float = 0.1) -> dict:
    """The train overrides of one recipe the defaults were chosen from."""
    extra = {"weight_decay": 5.0e-4} if optimizer == "sgd" else {}
    return {"scheduler": {"name": schedule, "warmup_epochs": warmup}, "loss": {"label_smoothing": smoothing},
            "optimizer": {"name": optimizer, "lr": lr, **extra}}


STUDY = {  # the recipes the defaults were chosen from
    "old_defaults": ("cosine, no warmup, no label smoothing, AdamW 1e-3", OLD_DEFAULTS),
    "cosine_w1_ls": ("cosine, 1 warmup epoch, label smoothing 0.1, AdamW 1e-3", recipe(1.0e-3)),
    "one_cycle_ls": ("one-cycle, label smoothing 0.1, AdamW 1e-3", recipe(1.0e-3, schedule="one_cycle", warmup=0)),
    "cosine_w1_ls_2e-3": ("cosine, 1 warmup epoch, label smoothing 0.1, AdamW 2e-3", recipe(2.0e-3)),
    "cosine_w1_ls_4e-3": ("cosine, 1 warmup epoch, label smoothing 0.1, AdamW 4e-3", recipe(4.0e-3)),
    "cosine_w1_2e-3": ("cosine, 1 warmup epoch, no label smoothing, AdamW 2e-3", recipe(2.0e-3, smoothing=0.0)),
    "cosine_ls_2e-3": ("cosine, no warmup, label smoothing 0.1, AdamW 2e-3", recipe(2.0e-3, warmup=0)),
    "one_cycle_ls_2e-3": ("one-cycle, label smoothing 0.1, AdamW 2e-3", recipe(2.0e-3, schedule="one_cycle", warmup=0)),
    "sgd_0.03": ("cosine, 1 warmup epoch, label smoothing 0.1, SGD 0.03", recipe(0.03, "sgd")),
    "sgd_0.1": ("cosine, 1 warmup epoch, label smoothing 0.1, SGD 0.1", recipe(0.1, "sgd")),
}


# the mask layout built from sketches: its variants (model overrides, train overrides)
MASK_VARIANTS = {
    "single_head": ("one 18-class head (the defaults)", {}, {}),
    "multi_head": ("heads: mask (mask 3 x gender 2 x age 3), a cross-entropy per head", {"heads": "mask"}, {}),
    "multi_head_age_x2": ("heads: mask, the age head's loss weighted 2", {"heads": "mask"},
                          {"loss": {"heads": {"age": {"weight": 2.0}}}}),
}
# which quickdraw classes draw each factor's values: mask {wear, incorrect, not}, gender {male, female}, age {<30, 30-59, >=60}
FACTOR_CLASSES = {"mask": ["airplane", "banana", "bird"], "gender": ["book", "cat"], "age": ["clock", "dog", "flower"]}


def mask_from_quickdraw(root: Path, persons: int, eval_persons: int, seed: int = 0) -> None:
    """The Mask competition's layout with sketches for faces: each image is 2x2 tiles of 28 px, the top-left
    sketch's class the mask state (a new drawing per image), top-right the gender and bottom-left the age
    (the same two drawings in all of a person's 7 images, as a face is). Eval images get test_labels.csv."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    drawings = {c: 255 - np.load(QUICKDRAW / f"{c}.npy") for group in FACTOR_CLASSES.values() for c in group}
    files = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"]
    mask_of = [0, 0, 0, 0, 0, 1, 2]

    def draw(factor: str, value: int, split: int) -> np.ndarray:  # train persons draw from the first half
        pool = drawings[FACTOR_CLASSES[factor][value]]
        return pool[rng.integers(0, 500) + 500 * split]

    def image(mask: int, gender_tile, age_tile, split: int) -> Image.Image:
        canvas = np.full((56, 56), 255, np.uint8)
        canvas[:28, :28], canvas[:28, 28:], canvas[28:, :28] = draw("mask", mask, split), gender_tile, age_tile
        return Image.fromarray(canvas).convert("RGB")

    rows, labels, ids = [], [], []
    (root / "eval" / "images").mkdir(parents=True, exist_ok=True)
    for person in range(persons + eval_persons):
        gender, age_bin = int(rng.integers(2)), int(rng.integers(3))
        split = int(person >= persons)
        tiles = draw("gender", gender, split), draw("age", age_bin, split)
        age = [25, 45, 65][age_bin]
        if not split:
            folder = f"{person:06d}_{['male', 'female'][gender]}_Asian_{age}"
            (root / "train" / "images" / folder).mkdir(parents=True, exist_ok=True)
            rows.append(f"{person:06d},{['male', 'female'][gender]},Asian,{age},{folder}")
        for name, mask in zip(files, mask_of):
            picture = image(mask, *tiles, split)
            if split:
                image_id = f"{person:06d}_{name}.jpg"
                picture.save(root / "eval" / "images" / image_id, quality=95)
                ids.append(image_id)
                labels.append(f"{image_id},{mask * 6 + gender * 3 + age_bin}")
            else:
                picture.save(root / "train" / "images" / folder / f"{name}.jpg", quality=95)
    (root / "train" / "train.csv").write_text("id,gender,race,age,path\n" + "\n".join(rows) + "\n")
    (root / "eval" / "info.csv").write_text("ImageID,ans\n" + "".join(f"{i},0\n" for i in ids))
    (root / "test_labels.csv").write_text("image_path,target\n" + "\n".join(labels) + "\n")


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def base_grid(root: Path, work: Path, args) -> dict:
    mask = args.study == "mask"
    return {
        "name": "techniques", "seed": 5,
        "data": {"source": "mask" if mask else "sketch_csv", "root": str(root), "image_size": 48 if mask else args.image_size,
                 "folds": {"n_splits": 3, "use": [0, 1]}},
        "models": [{"name": args.model}],
        "train": {"epochs": args.epochs, "batch_size": 64},
        "scheduler": {"kind": "fifo"},
        "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "storage": str(work / "ray_results")},
        "insight": {"gradcam_configs": 0, "gallery": 0},
        "ensemble": {"top_k": 20, "output": str(work / "submission.csv"), "register": False},
    }


def cli(module: str, *args: str, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"{module} {' '.join(args)} failed ({result.returncode})")
    return time.perf_counter() - start


def scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from orchestrator.scoring import fast_macro_f1

    predicted = probs.argmax(1)
    return float((predicted == y).mean()), fast_macro_f1(predicted, y, probs.shape[1])


def config_scores(tracker, config_id: str, folds: list[int], labels: pd.Series) -> dict[str, float]:
    """OOF and held-out accuracy / macro F1 of one config (its folds' test probabilities averaged)."""
    from orchestrator.ensemble.members import load_members

    member = next(m for m in load_members(tracker, folds)[0] if m.config_id == config_id)
    oof = scores(member.oof.filter(like="prob_").to_numpy(), member.oof["target"].to_numpy())
    truth = labels.reindex(member.test["image_path"]).to_numpy()
    held = scores(member.test_probs, truth)
    return {"oof_acc": oof[0], "oof_f1": oof[1], "test_acc": held[0], "test_f1": held[1]}


def run_variant(name: str, train: dict, root: Path, work: Path, args, tracker_of, model: dict | None = None) -> tuple[str, float]:
    grid = base_grid(root, work, args)
    grid["train"] = merge(grid["train"], train)
    grid["models"] = [merge(grid["models"][0], model or {})]
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    seconds = cli("orchestrator.run", str(path), cwd=work)
    tracker = tracker_of()
    parent = tracker.runs("grid")[0]
    (config_id,) = {r.data.tags["config_id"] for r in tracker.runs("trial", f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    return config_id, seconds


def plain_loop(root: Path, work: Path, args, grid_name: str = "techniques", folds_trained: tuple[int, ...] | None = (0, 1),
               seed: int = 0) -> dict[str, float]:
    """The reference: a plain PyTorch loop (timm model, AdamW 1e-3, one-cycle, label smoothing 0.1, hflip) per fold
    (its test probabilities averaged), or with `folds_trained` None once on every training row (no OOF scores)."""
    import timm
    import torch
    from PIL import Image

    from orchestrator.layout import GridLayout

    torch.manual_seed(seed)
    np.random.seed(seed)
    folds = pd.read_parquet(GridLayout.of(str(work / "ray_results"), grid_name).folds_table)
    test = pd.read_csv(root / "test_labels.csv")
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def load(paths):
        side = args.image_size
        images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((side, side))) for p in paths])
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std

    x_all, x_test = load(folds["image_path"]), load([root / "test" / p for p in test["image_path"]])
    y_all = torch.as_tensor(folds["target"].to_numpy().copy())
    oof_probs, oof_y, test_probs = [], [], []
    for fold in folds_trained or (None,):
        train_idx = np.flatnonzero(folds["fold"].to_numpy() != fold)
        val_idx = np.flatnonzero(folds["fold"].to_numpy() == fold)
        model = timm.create_model(args.model, num_classes=10)
        train_plain(model, x_all, y_all, torch.nn.CrossEntropyLoss(label_smoothing=0.1), train_idx, args.epochs, 1e-3,
                    np.random.permutation)
        model.eval()
        with torch.no_grad():
            if len(val_idx):
                oof_probs.append(torch.cat([model(x_all[val_idx][i:i + 256]).softmax(1) for i in range(0, len(val_idx), 256)]))
                oof_y.append(y_all[val_idx])
            test_probs.append(torch.cat([model(x_test[i:i + 256]).softmax(1) for i in range(0, len(x_test), 256)]))
    oof = scores(torch.cat(oof_probs).numpy(), torch.cat(oof_y).numpy()) if oof_probs else (float("nan"),) * 2
    held = scores(torch.stack(test_probs).mean(0).numpy(), test["target"].to_numpy())
    return {"oof_acc": oof[0], "oof_f1": oof[1], "test_acc": held[0], "test_f1": held[1]}


def ensemble_scores(path: Path, work: Path, tracker_of, *sets: str) -> dict[str, float]:
    """The ensemble job on the grid at `path` (`--set` each of `sets`): its OOF scores and held-out accuracy."""
    cli("orchestrator.ensemble", str(path), *(a for s in sets for a in ("--set", s)), cwd=work)
    m = tracker_of().runs("ensemble")[0].data.metrics
    return {"oof": m["ensemble_oof_val_acc"], "oof_cv": m.get("ensemble_oof_val_acc_cv", float("nan")),
            "test_acc": m["holdout_accuracy"]}


def refit_study(root: Path, work: Path, args) -> None:
    """Refit against the fold ensemble and a plain loop on every row, held out (#25), one grid per seed.

    The grid is the one a new user runs with the tool's defaults: test_resnet and test_vit, 3 folds, fold_asha.
    Per seed: its fold ensemble; the same grid run again with `ensemble.refit: members` (the folds are reused,
    only the refits train) and ensembled with each member's refit at shares 0.25 to 1 (alone); a plain PyTorch
    loop training test_resnet once on every row. Then the medians over the seeds.
    """
    from orchestrator.tracking.mlflow_store import Tracker

    shares = (0.0, 0.25, 0.5, 0.75, 1.0)  # the refits' share of their members: 0 is the fold ensemble, 1 the refits alone
    columns = ["fold ensemble", *(f"refit share {s:g}" for s in shares[1:-1]), "refits alone", "plain loop, all rows"]
    results = []
    for seed in range(args.seeds):
        grid = base_grid(root, work, args)
        grid.update(name=f"refit-s{seed}", seed=seed, models=[{"name": "test_resnet"}, {"name": "test_vit"}],
                    scheduler={"kind": "fold_asha"})
        grid["data"].update(image_size=32, folds={"n_splits": 3})
        grid["ensemble"] = {"output": str(work / "submission.csv"), "register": False}
        path = work / f"refit-s{seed}.yaml"
        path.write_text(yaml.safe_dump(grid, sort_keys=False))

        def tracker_of(name=grid["name"]):
            return Tracker(grid["tracking"]["uri"], name)

        grid_s = cli("orchestrator.run", str(path), cwd=work)
        refit_s = cli("orchestrator.run", str(path), "--set", "ensemble.refit=members", cwd=work)
        ensembles = [ensemble_scores(path, work, tracker_of, f"ensemble.refit_share={share}") for share in shares]
        folds = ensembles[0]
        start = time.perf_counter()
        plain = plain_loop(root, work, argparse.Namespace(**{**vars(args), "model": "test_resnet", "image_size": 32}),
                           grid["name"], folds_trained=None, seed=seed)
        plain_s = time.perf_counter() - start
        held = [e["test_acc"] for e in ensembles] + [plain["test_acc"]]
        results.append(held)
        print(f"seed {seed}: held-out acc " + ", ".join(f"{c} {v:.4f}" for c, v in zip(columns, held))
              + f"; ensemble OOF acc {folds['oof']:.4f} fitted on its rows, {folds['oof_cv']:.4f} cross-validated; "
              f"grid {grid_s:.0f} s, refits {refit_s:.0f} s, plain loop {plain_s:.0f} s", flush=True)
    header = ["seed", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += [f"| {i} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for i, row in enumerate(results)]
    lines.append("| median | " + " | ".join(f"{v:.4f}" for v in np.median(results, axis=0)) + " |")
    print("\nheld-out accuracy\n" + "\n".join(lines))


def table(rows: list[list[str]], delta: str) -> str:
    header = ["variant", "what", "OOF acc", "OOF F1", "held-out acc", "held-out F1", delta, "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=28, help="quickdraw's own side; test_vit needs 32")
    parser.add_argument("--variants", nargs="*", default=None, help="a subset of the variants (default: all)")
    parser.add_argument("--study", choices=["techniques", "defaults", "mask", "refit"], default="techniques",
                        help="mask: single vs multi-head models and the ensemble's F1 offsets on the Mask layout made of "
                             "sketches; refit: refit on all rows against the fold ensemble and a plain loop (3,000 train, "
                             "1,000 test images at --per-class 400)")
    parser.add_argument("--seeds", type=int, default=3, help="refit: grids (seeds) to take the median over")
    parser.add_argument("--no-ensemble", action="store_true", help="skip the ensemble methods and the pseudo round")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()

    from orchestrator.data.export import export_sketch_csv, quickdraw_images
    from orchestrator.tracking.mlflow_store import Tracker

    work = args.keep or Path(tempfile.mkdtemp(prefix="techniques-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.study == "mask":
        root = work / "mask"
        mask_from_quickdraw(root, persons=args.per_class, eval_persons=args.per_class // 3)
        print(f"the Mask layout from quickdraw10 sketches: {args.per_class} persons (7 images each), "
              f"{args.per_class // 3} eval persons, 48 px, {args.model}, {args.epochs} epochs, folds 0 and 1 of 3 "
              f"(grouped by person); work in {work}", flush=True)
        variants = MASK_VARIANTS
    elif args.study == "refit":
        root = work / "quickdraw"
        images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
        export_sketch_csv(images, targets, classes, root, test_fraction=0.25, seed=0)
        print(f"quickdraw10: {args.per_class}/class, {len(images)} images (a quarter held out), 32 px, "
              f"{args.epochs} epochs, {args.seeds} seeds; work in {work}", flush=True)
        return refit_study(root, work, args)
    else:
        root = work / "quickdraw"
        images, targets, classes = quickdraw_images(QUICKDRAW, per_class=args.per_class)
        export_sketch_csv(images, targets, classes, root, test_fraction=0.2, seed=0)
        print(f"quickdraw10: {args.per_class}/class, {len(images)} images, {args.image_size} px, {args.model}, {args.epochs} epochs, "
              f"folds 0 and 1 of 3; work in {work}", flush=True)
        variants = {k: (what, {}, train) for k, (what, train) in (TECHNIQUES if args.study == "techniques" else STUDY).items()}
    labels = pd.read_csv(root / "test_labels.csv").set_index("image_path")["target"]
    grid = base_grid(root, work, args)

    def tracker_of():
        return Tracker(grid["tracking"]["uri"], grid["name"])

    chosen = {k: v for k, v in variants.items() if args.variants is None or k in args.variants}
    results: dict[str, tuple[str, dict[str, float], float]] = {}
    for name, (what, model, train) in chosen.items():
        config_id, seconds = run_variant(name, train, root, work, args, tracker_of, model)
        results[name] = (what, config_scores(tracker_of(), config_id, [0, 1], labels), seconds)
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in results[name][1].items()})} ({seconds:.0f} s)", flush=True)
    if args.study != "mask":
        start = time.perf_counter()
        results["plain_loop"] = ("a plain PyTorch loop: AdamW 1e-3, one-cycle, label smoothing 0.1, hflip",
                                 plain_loop(root, work, args), time.perf_counter() - start)
        print(f"plain_loop: {json.dumps({k: round(v, 4) for k, v in results['plain_loop'][1].items()})}", flush=True)

    first = next(iter(results))
    key = "test_f1" if args.study == "mask" else "test_acc"  # the competition's metric
    reference = results.get("defaults", results[first])[1][key]
    rows = [[name, what, *(f"{s[k]:.4f}" for k in ("oof_acc", "oof_f1", "test_acc", "test_f1")),
             f"{s[key] - reference:+.4f}", f"{seconds:.0f}"] for name, (what, s, seconds) in results.items()]
    if args.study != "defaults" and not args.no_ensemble:
        rows += ensemble_rows(work, grid, tracker_of, reference, key, pseudo=args.study == "techniques", labels=labels)
    print("\n" + table(rows, f"held-out {'F1' if key == 'test_f1' else 'acc'} vs {'defaults' if 'defaults' in results else first}"))


def ensemble_rows(work: Path, grid: dict, tracker_of, reference: float, key: str, pseudo: bool,
                  labels: pd.Series) -> list[list[str]]:
    """The ensemble job over every variant's config: each method, macro-F1 offsets on and off, then a pseudo round."""
    path = work / "ensemble.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    rows = []
    for method, offsets in (("hill_climb", "off"), ("mean", "off"), ("rank", "off"), ("vote", "off"), ("auto", "off"),
                            ("hill_climb", "on")):
        seconds = cli("orchestrator.ensemble", str(path), "--set", f"ensemble.method={method}", "--set",
                      f"ensemble.f1_offsets={offsets}", cwd=work)
        run = tracker_of().runs("ensemble")[0]
        m = run.data.metrics
        oof = m.get("ensemble_oof_val_acc", m.get("ensemble_oof_val_f1", float("nan")))
        tuned = (f", offsets {'kept' if m.get('f1_offsets_kept') else 'dropped'} (OOF F1 {m['oof_f1_before_offsets']:.4f} -> "
                 f"{m['oof_f1_offsets_cv']:.4f} cross-validated)") if offsets == "on" else ""
        metric = "val_acc" if "ensemble_oof_val_acc" in m else "val_f1"
        cv = m.get(f"ensemble_oof_{metric}_cv", float("nan"))
        what = f"ensemble of every variant, {run.data.tags['method']} (OOF {oof:.4f} fitted, {cv:.4f} cross-validated){tuned}"
        rows.append([f"ensemble {method}" + (" + f1_offsets" if offsets == "on" else ""), what,
                     *((f"{oof:.4f}", "") if metric == "val_acc" else ("", f"{oof:.4f}")),
                     f"{m['holdout_accuracy']:.4f}", f"{m['holdout_f1']:.4f}",
                     f"{m['holdout_f1' if key == 'test_f1' else 'holdout_accuracy'] - reference:+.4f}",
                     f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    if not pseudo:
        return rows
    teacher = tracker_of().runs("ensemble")[0].info.run_id
    start = time.perf_counter()
    cli("orchestrator.run", str(work / "defaults.yaml"), "--pseudo", teacher, "--set", "pseudo.threshold=0.9", cwd=work)
    tracker = tracker_of()
    parent = tracker.runs("grid")[0]
    (config_id,) = {r.data.tags["config_id"] for r in tracker.runs("trial", f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    s = config_scores(tracker, config_id, [0, 1], labels)
    what = f"defaults + {parent.data.tags['pseudo_rows']} test rows labelled by the ensemble (top probability >= 0.9)"
    rows.append(["pseudo_round", what, *(f"{s[k]:.4f}" for k in ("oof_acc", "oof_f1", "test_acc", "test_f1")),
                 f"{s[key] - reference:+.4f}", f"{time.perf_counter() - start:.0f}"])
    print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
