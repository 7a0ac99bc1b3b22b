"""The one shape every source produces (`DataTables`), and the CSV checks sources share.

train: row_id, image_path (absolute), rel_path, target, group; a multilabel task: target -1 and tags (the row's
       tag indexes, space-separated; "" for none)
test:  row_id, image_path (absolute), rel_path (the csv source: the id its test CSV names the row by)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.data.submission import SubmissionFormat
from orchestrator.errors import InputError


@dataclass
class DataTables:
    train: pd.DataFrame
    test: pd.DataFrame | None
    classes: list[str]
    submission: SubmissionFormat | None = None  # the csv source's: the test CSV's shape (else the source's writer)
    task: str = "multiclass"  # or multilabel: targets are the `tags` column's multi-hot vectors


def multi_hot(tags: pd.Series, tag_count: int) -> np.ndarray:
    """(rows, tags) float32 0/1 from a `tags` column (each row's tag indexes, space-separated)."""
    out = np.zeros((len(tags), tag_count), dtype=np.float32)
    for row, value in enumerate(tags.astype(str)):
        for k in value.split():
            out[row, int(k)] = 1.0
    return out


def hot_of_names(values, classes: list[str], separator: str = " ") -> np.ndarray:
    """(rows, tags) float32 0/1 from tag names joined by `separator` (a test_labels.csv cell, a served model's `tags`);
    a name not among `classes` is no tag."""
    index = {name: k for k, name in enumerate(classes)}
    out = np.zeros((len(values), len(classes)), dtype=np.float32)
    for row, value in enumerate(values):
        for name in str(value).split(separator):
            if name.strip() in index:
                out[row, index[name.strip()]] = 1.0
    return out


def encode_tags(hot: np.ndarray) -> list[str]:
    """The `tags` column of (rows, tags) 0/1 (or bool) vectors."""
    return [" ".join(map(str, np.flatnonzero(row > 0.5))) for row in np.asarray(hot)]


def read_csv(path: Path, required: set[str], dtype: type | None = None, hint: str = "", **options) -> pd.DataFrame:
    """The CSV at `path`, with `required` columns and a row at least; `hint`: the fix a missing column calls for."""
    try:
        frame = pd.read_csv(path, dtype=dtype, **options)
    except Exception as err:  # noqa: BLE001 - parser errors, encoding errors...
        raise InputError(f"cannot read CSV: {err}", source=str(path)) from None
    missing = required - set(frame.columns)
    if missing:
        raise InputError(f"missing column(s) {', '.join(sorted(missing))}; found {', '.join(map(str, frame.columns))}"
                         + (f". {hint}" if hint else ""), source=str(path))
    if frame.empty:
        raise InputError("has no rows", source=str(path))
    return frame


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise InputError(f"{what}: directory not found: {path} (check data.root in the grid file)")


def refuse_repeated(paths: list[str], source: str, noun: str = "image") -> None:
    """Raise one InputError naming the CSV lines (row i is line i + 2) whose path an earlier line has.

    One image in two rows (or one person's folder under two ids) can sit in a training
    fold and a validation fold at once: a leak that inflates every OOF score.
    """
    first: dict[str, int] = {}
    repeats = []
    for i, path in enumerate(paths):
        key = os.path.normcase(os.path.realpath(path))  # the same file, however it is spelt
        if key in first:
            repeats.append(f"line {i + 2} repeats line {first[key] + 2}: {path}")
        else:
            first[key] = i
    if repeats:
        shown = "\n  ".join(repeats[:10]) + (f"\n  ... and {len(repeats) - 10} more" if len(repeats) > 10 else "")
        raise InputError(f"{len(repeats)} line(s) name the {noun} of an earlier line; it could then be in a training fold "
                         f"and a validation fold at once (a leak that inflates OOF scores). Remove the repeated lines:\n  {shown}",
                         source=source)
