"""What `orchestrator.predict` reads: an image, a folder of images, a CSV of image paths, or a competition's test layout.

Every form becomes one table of rows (row_id, image_path: absolute, rel_path: as
the input names it) and, for a competition layout, the function that writes that
competition's submission file. Paths from a CSV stay inside its folder (`safe_join`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.data.images import IMAGE_SUFFIXES, check_images
from orchestrator.data.mask import mask_submission
from orchestrator.data.sources import folder_submission, image_rows, images_under, sketch_submission
from orchestrator.data.tables import read_csv
from orchestrator.errors import InputError

Submission = Callable[[pd.DataFrame, np.ndarray, list[str]], pd.DataFrame]


@dataclass(frozen=True)
class Inputs:
    rows: pd.DataFrame  # row_id, image_path (absolute), rel_path
    kind: str  # what INPUT was, for people
    submission: Submission | None = None  # a competition layout's submission writer


def read_inputs(path: str | Path) -> Inputs:
    """The images INPUT names; InputError (naming the file and line) when there are none or one cannot be read."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        inputs = Inputs(_file_rows(path), f"image {path}", folder_submission)
    elif path.is_file() and path.suffix.lower() == ".csv":
        inputs = Inputs(_csv_rows(path, path.parent), f"CSV {path}")
    elif (path / "test.csv").is_file() and (path / "test").is_dir():
        inputs = Inputs(_csv_rows(path / "test.csv", path / "test"), f"sketch_csv test set {path}/test.csv", sketch_submission)
    elif (path / "eval" / "info.csv").is_file():
        inputs = Inputs(_csv_rows(path / "eval" / "info.csv", path / "eval" / "images", column="ImageID"),
                        f"mask eval set {path}/eval/info.csv", mask_submission)
    elif path.is_dir():  # an image_folder test folder: its submission is the one the ensemble writes for that source
        inputs = Inputs(_folder_rows(path), f"folder {path}", folder_submission)
    else:
        raise InputError(f"INPUT {path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images, a "
                         f".csv with an image_path column, or a competition data root (test.csv + test/, or eval/info.csv)")
    if inputs.rows.empty:
        raise InputError(f"INPUT {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return inputs


def _csv_rows(csv: Path, base: Path, column: str = "image_path") -> pd.DataFrame:
    frame = read_csv(csv, {column}, dtype=str)[[column]].rename(columns={column: "image_path"})
    return image_rows(frame, base, csv, training=False)


def _file_rows(file: Path) -> pd.DataFrame:
    check_images([str(file.resolve())], lambda i: str(file))
    return pd.DataFrame({"row_id": [0], "image_path": [str(file.resolve())], "rel_path": [file.name]})


def _folder_rows(folder: Path) -> pd.DataFrame:
    files = images_under(folder)
    paths = [str(p.resolve()) for p in files]
    check_images(paths, lambda i: str(files[i]))
    return pd.DataFrame({"row_id": np.arange(len(paths)), "image_path": paths,
                         "rel_path": [p.relative_to(folder).as_posix() for p in files]})
