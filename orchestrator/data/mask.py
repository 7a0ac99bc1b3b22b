"""The Mask competition layout: 18 classes from per-person folders.

    root/train/train.csv                      id,gender,race,age,path
    root/train/images/<path>/                 mask1..mask5, incorrect_mask, normal (any extension)
    root/eval/info.csv                        ImageID,ans   (ans ignored; the order is the submission's)
    root/eval/images/<ImageID>

class = mask * 6 + gender * 3 + age, with mask {mask1-5: 0, incorrect_mask: 1, normal: 2},
gender {male: 0, female: 1}, age {< bins[0]: 0, bins[0]..bins[1]-1: 1, >= bins[1]: 2}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.data.images import check_images, safe_join
from orchestrator.data.tables import DataTables, read_csv, refuse_repeated, require_dir
from orchestrator.errors import InputError

MASK = {**{f"mask{i}": 0 for i in range(1, 6)}, "incorrect_mask": 1, "normal": 2}
GENDER = {"male": 0, "female": 1}
CLASSES = [f"{mask}_{gender}_{age}" for mask in ("mask", "incorrect", "normal")
           for gender in ("male", "female") for age in ("young", "middle", "old")]


def age_class(age: int, bins: list[int]) -> int:
    return 0 if age < bins[0] else 1 if age < bins[1] else 2


def mask_class(mask: int, gender: int, age: int) -> int:
    return mask * 6 + gender * 3 + age


def _person_rows(person: pd.Series, line: int, images: Path, csv: Path, bins: list[int]) -> list[dict]:
    where = f"{csv} line {line}"
    gender = GENDER.get(str(person["gender"]).strip().lower())
    if gender is None:
        raise InputError(f"{where}: gender {person['gender']!r} is not male or female")
    try:
        age = age_class(int(person["age"]), bins)
    except (TypeError, ValueError):
        raise InputError(f"{where}: age {person['age']!r} is not a whole number") from None
    folder = Path(safe_join(images, str(person["path"]), where))
    if not folder.is_dir():
        raise InputError(f"{where}: folder {folder} not found")
    rows = []
    for file in sorted(folder.iterdir()):
        if file.name.startswith("."):
            continue
        if file.stem not in MASK:
            raise InputError(f"{file}: unexpected file name; a person folder holds {', '.join(MASK)} (any extension)")
        rows.append({"image_path": str(file), "rel_path": f"{person['path']}/{file.name}", "group": str(person["id"]),
                     "target": mask_class(MASK[file.stem], gender, age)})
    return rows


def load_mask(cfg) -> DataTables:
    root = Path(cfg.root)
    require_dir(root, "data.root")
    csv = root / "train" / "train.csv"
    if not csv.is_file():
        raise InputError(f"data.root: {csv} not found (the mask layout needs train/train.csv and train/images/)")
    people = read_csv(csv, {"id", "gender", "age", "path"}, dtype=str)  # ids like 000001 are names, not numbers
    refuse_repeated([str(root / "train" / "images" / str(p)) for p in people["path"]], str(csv), "person folder")
    rows = [row for i, person in people.iterrows()
            for row in _person_rows(person, i + 2, root / "train" / "images", csv, cfg.age_bins)]
    if not rows:
        raise InputError("no images in any person folder", source=str(csv))
    train = pd.DataFrame(rows)
    check_images(train["image_path"].tolist(), lambda i: f"{train['rel_path'][i]}")
    train.insert(0, "row_id", np.arange(len(train)))
    test = None
    info = root / "eval" / "info.csv"
    if info.is_file():
        ids = read_csv(info, {"ImageID"}, dtype=str)["ImageID"].tolist()
        paths = [safe_join(root / "eval" / "images", image_id, f"{info} line {i + 2}") for i, image_id in enumerate(ids)]
        check_images(paths, lambda i: f"{info} line {i + 2}")
        test = pd.DataFrame({"row_id": np.arange(len(ids)), "image_path": paths, "rel_path": ids})
    return DataTables(train[["row_id", "image_path", "rel_path", "target", "group"]], test, list(CLASSES))


def mask_submission(test: pd.DataFrame, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """`ImageID,ans` in info.csv order (test rows keep that order by row_id)."""
    order = np.argsort(test["row_id"].to_numpy())
    return pd.DataFrame({"ImageID": test["rel_path"].to_numpy()[order], "ans": np.asarray(predicted)[order]})
