"""What `orchestrator.predict` reads: an image, a folder of images, a CSV of image paths, or a competition's test layout.

Every form becomes one table of rows (row_id, image_path: absolute, rel_path: as
the input names it) and, for a competition layout, what writes that competition's
submission file: the seeds' writers, or the csv source's format the model carries
(a root holding its test CSV and test images). Paths from a CSV stay inside its
folder (`safe_join`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.data.csv_source import test_rows
from orchestrator.data.images import IMAGE_SUFFIXES, check_images
from orchestrator.data.mask import mask_submission
from orchestrator.data.sources import folder_submission, image_rows, images_under, sketch_submission
from orchestrator.data.submission import SubmissionFormat
from orchestrator.data.tables import read_csv
from orchestrator.errors import InputError

Submission = Callable[[pd.DataFrame, np.ndarray, list[str]], pd.DataFrame]


@dataclass(frozen=True)
class Inputs:
    rows: pd.DataFrame  # row_id, image_path (absolute), rel_path
    kind: str  # what INPUT was, for people
    submission: Submission | None = None  # a competition layout's submission writer
    format: SubmissionFormat | None = None  # the csv source's (rows' rel_path: the test CSV's ids)

    @property
    def writes_submission(self) -> bool:
        return self.submission is not None or self.format is not None


def read_inputs(path: str | Path, model_format: Callable[[], SubmissionFormat | None] = lambda: None) -> Inputs:
    """The images INPUT names; InputError (naming the file and line) when there are none or one cannot be read.

    `model_format`: the csv source's submission format of the model, asked for only when INPUT is a folder (a
    competition root holding its test CSV and test images is read as that competition's test set)."""
    path = Path(path)
    fmt = model_format() if path.is_dir() else None
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        inputs = Inputs(_file_rows(path), f"image {path}", folder_submission)
    elif path.is_file() and path.suffix.lower() == ".csv":
        inputs = Inputs(_csv_rows(path, path.parent), f"CSV {path}")
    elif fmt is not None and (path / fmt.test_csv).is_file() and (path / fmt.test_images).is_dir():
        inputs = Inputs(test_rows(path, fmt), f"csv test set {path}/{fmt.test_csv}", format=fmt)
    elif (path / "test.csv").is_file() and (path / "test").is_dir():
        inputs = Inputs(_csv_rows(path / "test.csv", path / "test"), f"sketch_csv test set {path}/test.csv", sketch_submission)
    elif (path / "eval" / "info.csv").is_file():
        inputs = Inputs(_csv_rows(path / "eval" / "info.csv", path / "eval" / "images", column="ImageID"),
                        f"mask eval set {path}/eval/info.csv", mask_submission)
    elif (path / "train.csv").is_file():
        raise InputError(_competition_root(path, fmt))
    elif path.is_dir():  # an image_folder test folder: its submission is the one the ensemble writes for that source
        inputs = Inputs(_folder_rows(path), f"folder {path}", folder_submission)
    else:
        raise InputError(f"INPUT {path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images, a "
                         f".csv with an image_path column, or a competition data root (test.csv + test/, or eval/info.csv)")
    if inputs.rows.empty:
        raise InputError(f"INPUT {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return inputs


def _competition_root(path: Path, fmt: SubmissionFormat | None) -> str:
    """What to say of a folder holding train.csv that is no test layout the model knows: predicting it as a folder
    would predict its training images too."""
    if fmt is not None:
        how = (f"the model's competition reads its test rows from {fmt.test_csv} and {fmt.test_images}/, which "
               f"{path} lacks; give the root that holds them (--format submission writes the competition's file)")
    else:
        how = "give its test folder (e.g. INPUT/test_images), or its test CSV of image paths"
    return (f"INPUT {path} holds train.csv: it looks like a competition data root, and predicting it as a folder "
            f"would predict its training images too; {how}")


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
