"""Source adapters: each turns a data root into one `DataTables` (data/tables.py: the only shape the rest sees)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from orchestrator.data.csv_source import load_csv
from orchestrator.data.images import IMAGE_SUFFIXES, check_images, safe_join
from orchestrator.data.mask import load_mask, mask_submission
from orchestrator.data.tables import DataTables, read_csv, refuse_repeated, require_dir
from orchestrator.errors import InputError

if TYPE_CHECKING:
    from orchestrator.config import DataConfig


@dataclass(frozen=True)
class Source:
    load: Callable[[DataConfig], DataTables]
    # (test table, predicted class index per row, class names) -> submission frame; None: the data's own
    # SubmissionFormat (DataTables.submission) writes it
    submission: Callable[[pd.DataFrame, np.ndarray, list[str]], pd.DataFrame] | None
    materializes: bool = False  # writes its data on first load (so --dry-run does not load it)


# ---------------------------------------------------------------- sketch_csv


def _classes_from(frame: pd.DataFrame, csv: Path) -> list[str]:
    """Sorted class names; checks that target == index of class_name among them, row by row."""
    targets = pd.to_numeric(frame["target"], errors="coerce")
    bad = frame.index[targets.isna() | (targets < 0) | (targets % 1 != 0)]
    if len(bad):
        raise InputError(f"line {bad[0] + 2}: target {frame['target'][bad[0]]!r} is not a class index (0, 1, ...)", source=str(csv))
    frame["target"] = targets.astype(int)
    if "class_name" not in frame.columns:
        classes = [str(t) for t in range(int(frame["target"].max()) + 1)]
    else:
        classes = sorted(frame["class_name"].astype(str).unique())
        expected = frame["class_name"].astype(str).map({name: k for k, name in enumerate(classes)})
        wrong = frame.index[expected != frame["target"]]
        if len(wrong):
            row = wrong[0]
            raise InputError(
                f"line {row + 2}: target {frame['target'][row]} does not match class_name {frame['class_name'][row]!r} "
                f"(target must be the index of class_name among the sorted class names, here {expected[row]})",
                source=str(csv),
            )
    if len(classes) < 2:
        raise InputError(f"class list has {len(classes)} class(es) {classes}; a classifier needs at least 2", source=str(csv))
    return classes


def image_rows(frame: pd.DataFrame, base: Path, csv: Path, training: bool) -> pd.DataFrame:
    """(row_id, image_path: absolute, rel_path) for `frame`'s image_path column, each inside `base` and opened once."""
    rel = frame["image_path"].astype(str).tolist()
    paths = [safe_join(base, r, f"{csv} line {i + 2}") for i, r in enumerate(rel)]
    if training:
        refuse_repeated(paths, str(csv))
    check_images(paths, lambda i: f"{csv} line {i + 2}")
    return pd.DataFrame({"row_id": np.arange(len(frame)), "image_path": paths, "rel_path": rel})


SKETCH_HINT = ("That is the sketch_csv layout (class_name,image_path,target + train/). For your competition's own "
               "CSV (an image id and a label per row, train_images/, sample_submission.csv) set data.source: csv, and "
               "data.id_column / data.label_column if the columns are not found by name (docs/data.md, \"Your "
               "competition's CSV\")")


def load_sketch_csv(cfg) -> DataTables:
    """`root/train.csv` (class_name,image_path,target[,group]) + `root/train/`; optional test.csv + test/."""
    root = Path(cfg.root)
    require_dir(root, "data.root")
    csv = root / "train.csv"
    if not csv.is_file():
        raise InputError(f"data.root: {csv} not found (the sketch_csv layout needs train.csv and train/)")
    frame = read_csv(csv, {"image_path", "target"}, hint=SKETCH_HINT)
    classes = _classes_from(frame, csv)
    train = image_rows(frame, root / "train", csv, training=True)
    train["target"] = frame["target"].to_numpy()
    train["group"] = frame["group"].astype(str).to_numpy() if "group" in frame.columns else None
    test = None
    if (root / "test.csv").is_file():
        test_csv = root / "test.csv"
        test = image_rows(read_csv(test_csv, {"image_path"}), root / "test", test_csv, training=False)
    return DataTables(train, test, classes)


def sketch_submission(test: pd.DataFrame, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"ID": test["row_id"].to_numpy(), "image_path": test["rel_path"].to_numpy(), "target": predicted})


# -------------------------------------------------------------- image_folder


def images_under(folder: Path) -> list[Path]:
    """Image files anywhere under `folder` (hidden ones skipped), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "eval", "dev"}


def check_folder_layout(root: Path, classes: list[str], test_root: Path | None) -> None:
    """The classic layout mistakes, before they train silently: class folders named like splits (data.root one
    level too high) and a test folder inside the training root (its images would train)."""
    splits = sorted(c for c in classes if c.lower() in SPLIT_NAMES)
    if splits:
        train = next((c for c in splits if c.lower().startswith("train")), None)
        test = next((c for c in splits if c.lower() not in {"train", "training"}), None)
        hint = " and ".join(([f"data.root: {root / train}"] if train else []) + ([f"data.test_root: {root / test}"] if test else []))
        raise InputError(f"data.root: {root} holds split folders ({', '.join(splits)}), not class folders: image_folder "
                         f"reads root/<class>/<image>, so they would become classes" + (f"; did you mean {hint}?" if hint else ""))
    if test_root is not None and Path(test_root).resolve().is_relative_to(root.resolve()):
        raise InputError(f"data.test_root: {test_root} is inside data.root {root}, so its images would be read as "
                         f"training images; keep the test folder beside the class folders' parent, not in it")


def load_image_folder(cfg) -> DataTables:
    """`root/<class>/<image>`; optional `test_root/<image>` for the test set."""
    root = Path(cfg.root)
    require_dir(root, "data.root")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    check_folder_layout(root, classes, cfg.test_root)
    if len(classes) < 2:
        raise InputError(f"data.root: found {len(classes)} class folder(s) in {root}; image_folder needs root/<class>/<image> with at least 2 classes")
    rows = [(str(p), str(p.relative_to(root)), k) for k, name in enumerate(classes) for p in images_under(root / name)]
    if not rows:
        raise InputError(f"data.root: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    paths, rel, targets = map(list, zip(*rows))
    check_images(paths, lambda i: "image")
    train = pd.DataFrame({"row_id": np.arange(len(rows)), "image_path": paths, "rel_path": rel, "target": targets, "group": None})
    test = None
    if cfg.test_root is not None:
        require_dir(Path(cfg.test_root), "data.test_root")
        files = images_under(Path(cfg.test_root))
        check_images([str(p) for p in files], lambda i: "test image")
        test = pd.DataFrame({"row_id": np.arange(len(files)), "image_path": [str(p) for p in files],
                             "rel_path": [str(p.relative_to(cfg.test_root)) for p in files]})
    return DataTables(train, test, classes)


def folder_submission(test: pd.DataFrame, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_path": test["rel_path"].to_numpy(), "target": predicted,
                         "class_name": [classes[k] for k in predicted]})


# ---------------------------------------------------------------------- demo


def load_demo(cfg) -> DataTables:
    """scikit-learn's bundled digits, written once to `data.root` in the sketch_csv layout."""
    from orchestrator.data.export import digits_images, export_sketch_csv

    root = Path(cfg.root)
    if not (root / "train.csv").is_file():
        images, targets, classes = digits_images()
        export_sketch_csv(images, targets, classes, root)
    return load_sketch_csv(cfg)


# keyed by catalog.SOURCES' names (where each source's fold kind and metric are, for config)
SOURCES: dict[str, Source] = {
    "csv": Source(load_csv, None),
    "mask": Source(load_mask, mask_submission),
    "sketch_csv": Source(load_sketch_csv, sketch_submission),
    "image_folder": Source(load_image_folder, folder_submission),
    "demo": Source(load_demo, sketch_submission, materializes=True),
}
