"""Write image arrays in a competition layout: sketch_csv (train.csv, train/, test.csv, test/) or the most common
Kaggle one (train.csv of ids and class names, train_images/, test_images/, sample_submission.csv).

The embedded demo (scikit-learn digits) and the quickdraw10 fixtures go through
this, so they exercise the same loaders as real competition data.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split


def export_sketch_csv(
    images: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    root: Path,
    test_fraction: float = 0.2,
    seed: int = 0,
    suffix: str = ".JPEG",
) -> None:
    """Write uint8 (N, H, W) grey images as `root/{train,test}/<class>/<i><suffix>` plus CSVs.

    Held-out test labels go to `test_labels.csv` (not read by the loader) so that
    tests and the demo can score a submission. Written to a temp dir and renamed, so
    an interrupted export never leaves a half dataset behind.
    """
    root = Path(root)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, stratify=targets, random_state=seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    rows = {"train": [], "test": []}
    for split, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        for i in idx:
            rel = f"{classes[targets[i]]}/{i:05d}{suffix}"
            path = tmp / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(path, quality=95)
            rows[split].append({"class_name": classes[targets[i]], "image_path": rel, "target": int(targets[i])})
    pd.DataFrame(rows["train"]).to_csv(tmp / "train.csv", index=False)
    test = pd.DataFrame(rows["test"])
    test[["image_path"]].to_csv(tmp / "test.csv", index=False)
    test.to_csv(tmp / "test_labels.csv", index=False)
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)


def export_kaggle_csv(images: np.ndarray, targets: np.ndarray, classes: list[str], root: Path, test_fraction: float = 0.2,
                      seed: int = 0, probabilities: bool = False) -> None:
    """Write uint8 (N, H, W) grey images as a Kaggle-style competition under `root`:

        train.csv              image_id,label   (class names; ids without ".png", in a shuffled order)
        train_images/<id>.png, test_images/<id>.png
        sample_submission.csv  image_id,label   (test rows in a shuffled order), or with `probabilities`
                               image_id,<class>,... (one column per class, not in sorted order)
        test_labels.csv        image_id,label   (held-out labels: not read by the loader; the ensemble scores them)
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = np.array([f"{k:06x}" for k in rng.permutation(len(images)) * 7919 + 4099])  # unrelated to class or order
    train_idx, test_idx = train_test_split(np.arange(len(images)), test_size=test_fraction, stratify=targets,
                                           random_state=seed)
    names = np.asarray(classes)
    for split, idx in (("train_images", train_idx), ("test_images", test_idx)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i]).save(root / split / f"{ids[i]}.png")
    train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)
    pd.DataFrame({"image_id": ids[train_idx], "label": names[targets[train_idx]]}).to_csv(root / "train.csv", index=False)
    if probabilities:
        shuffled = [classes[k] for k in rng.permutation(len(classes))]
        sample = pd.DataFrame({"image_id": ids[test_idx], **{c: 1 / len(classes) for c in shuffled}})
    else:
        sample = pd.DataFrame({"image_id": ids[test_idx], "label": classes[0]})
    sample.to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"image_id": ids[test_idx], "label": names[targets[test_idx]]}).to_csv(root / "test_labels.csv", index=False)


def export_multilabel_csv(images: np.ndarray, targets: np.ndarray, classes: list[str], root: Path, count: int,
                          test_fraction: float = 0.2, seed: int = 0, most: int = 3) -> None:
    """Write `count` multi-label images under `root` in the Kaggle layout: each a 2 x 2 grid of cells holding 1 to
    `most` drawings (blank cells white), its tags the drawings' classes, space-separated:

        train.csv              image_id,tags   (tag names)
        train_images/<id>.png, test_images/<id>.png
        sample_submission.csv  image_id,tags   (test rows in a shuffled order)
        test_labels.csv        image_id,tags   (held out: not read by the loader)
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    side = images.shape[1]
    ids = np.array([f"m{k:05d}" for k in rng.permutation(count)])
    tags, canvases = [], []
    for _ in range(count):
        canvas = np.full((2 * side, 2 * side), 255, dtype=np.uint8)
        picks = rng.choice(len(images), rng.integers(1, most + 1), replace=False)
        for cell, i in zip(rng.permutation(4), picks):
            canvas[(cell // 2) * side:(cell // 2 + 1) * side, (cell % 2) * side:(cell % 2 + 1) * side] = images[i]
        canvases.append(canvas)
        tags.append(" ".join(sorted({classes[targets[i]] for i in picks})))
    test = rng.permutation(count)[: round(count * test_fraction)]
    is_test = np.isin(np.arange(count), test)
    for k in range(count):
        folder = root / ("test_images" if is_test[k] else "train_images")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvases[k]).save(folder / f"{ids[k]}.png")
    tags = np.asarray(tags, dtype=object)
    pd.DataFrame({"image_id": ids[~is_test], "tags": tags[~is_test]}).to_csv(root / "train.csv", index=False)
    order = rng.permutation(test)
    pd.DataFrame({"image_id": ids[order], "tags": classes[0]}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"image_id": ids[order], "tags": tags[order]}).to_csv(root / "test_labels.csv", index=False)


def digits_images(size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled 8x8 digits as dark-on-white `size`px images (1,797 of them)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = 255 - (digits.images * (255 / 16)).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BICUBIC)) for g in grey])
    return images, digits.target.astype(int), [f"digit_{d}" for d in range(10)]


def quickdraw_images(folder: Path, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """quickdraw10 `<class>.npy` bitmaps as dark-on-white images (the README's loading recipe)."""
    files = sorted(Path(folder).glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no <class>.npy files in {folder}")
    arrays = [np.load(f)[:per_class] for f in files]
    images = 255 - np.concatenate(arrays)
    targets = np.concatenate([np.full(len(a), k) for k, a in enumerate(arrays)])
    return images, targets, [f.stem for f in files]
