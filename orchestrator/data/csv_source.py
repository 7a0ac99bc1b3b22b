"""The `csv` source: any Kaggle-style competition, read through the data.* keys.

    train.csv               <id>,<label>[,<group>]     (labels: class names, or integers)
    train_images/<id>[.png] (an id may be a file name, a stem or a relative path)
    sample_submission.csv   <id>,<label> or <id>,<class a>,<class b>,...   (the rows to submit, in order)
    test_images/<id>[.png]

The training rows become the one table shape (data/tables.py); the test CSV's rows, in its order, become the
test table (rel_path: the id as the CSV spells it), and its columns the submission format (data/submission.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from orchestrator.data.images import IMAGE_SUFFIXES, check_images, safe_join
from orchestrator.data.submission import SubmissionFormat, detect
from orchestrator.data.tables import DataTables, read_csv, refuse_repeated, require_dir
from orchestrator.errors import InputError

if TYPE_CHECKING:
    from orchestrator.config import DataConfig

ID_NAMES = ("id", "image_id", "imageid", "image", "image_name", "file_name", "filename", "file", "image_path", "path")
LABEL_NAMES = ("label", "labels", "target", "class", "class_name", "category")
DOCS = "docs/data.md, \"Your competition's CSV\""


def load_csv(cfg: DataConfig) -> DataTables:
    """`data.train_csv` + `data.train_images`, and `data.test_csv` + `data.test_images` when there is one."""
    root = Path(cfg.root)
    require_dir(root, "data.root")
    train_csv = _file(root, cfg.train_csv, "data.train_csv")
    frame = read_csv(train_csv, set(), dtype=str, keep_default_na=False)
    id_column = _column(frame, cfg.id_column, ID_NAMES, 0, "data.id_column", "image id", train_csv)
    label_column = _column(frame, cfg.label_column, LABEL_NAMES, 1, "data.label_column", "label", train_csv)
    if cfg.group_column is not None:
        _require(frame, [cfg.group_column], "data.group_column", train_csv)
    if cfg.task == "multilabel":
        targets, (tags, classes), int_labels = -1, tag_sets(frame[label_column], cfg.label_separator, label_column, train_csv), False
    else:
        (targets, classes, int_labels), tags = labels(frame[label_column], label_column, train_csv), None
    images = _folder(root, cfg.train_images, "data.train_images")
    paths, rel = resolve_ids(frame[id_column].tolist(), images, train_csv, id_column, "data.train_images")
    refuse_repeated(paths, str(train_csv))
    check_images(paths, lambda i: f"{train_csv} line {i + 2}")
    train = pd.DataFrame({"row_id": np.arange(len(frame)), "image_path": paths, "rel_path": rel, "target": targets,
                          "group": frame[cfg.group_column].to_numpy() if cfg.group_column else None})
    if tags is not None:
        train["tags"] = tags
    test, fmt = _test(cfg, root, id_column, label_column, classes, int_labels)
    return DataTables(train, test, classes, fmt, cfg.task)


def _test(cfg: DataConfig, root: Path, id_column: str, label_column: str, classes: list[str], int_labels: bool):
    """(test table, submission format), or (None, None) when the grid has no test CSV."""
    if cfg.test_csv is None:
        return None, None
    test_csv = root / cfg.test_csv
    if not test_csv.is_file():
        if "test_csv" in cfg.model_fields_set:
            raise InputError(f"data.test_csv: {test_csv} not found (the rows to predict, usually sample_submission.csv; "
                             f"null: no test set)")
        return None, None  # the default's file is absent: a grid without a test set
    frame = read_csv(test_csv, set(), dtype=str, keep_default_na=False)
    fmt = _format(frame, cfg, id_column, label_column, classes, int_labels)
    return _test_table(frame, test_csv, root, id_column, cfg.test_images, "data.test_images"), fmt


def _test_table(frame: pd.DataFrame, test_csv: Path, root: Path, id_column: str, images: str, key: str) -> pd.DataFrame:
    """The test CSV's rows, in its order: row_id, image_path (each id's image, opened once), rel_path (the id)."""
    ids = frame[id_column].tolist()
    paths, _ = resolve_ids(ids, _folder(root, images, key), test_csv, id_column, key)
    check_images(paths, lambda i: f"{test_csv} line {i + 2}")
    return pd.DataFrame({"row_id": np.arange(len(frame)), "image_path": paths, "rel_path": ids})


def _format(frame: pd.DataFrame, cfg: DataConfig, id_column: str, label_column: str, classes: list[str],
            int_labels: bool) -> SubmissionFormat:
    """The submission format the test CSV `frame` asks for (its columns left out said on stderr), with what the
    grid says of its labels and where predict finds a root's rows."""
    test_csv = Path(cfg.root) / cfg.test_csv
    _require(frame, [id_column], "data.id_column", test_csv, also="the test CSV names its rows by the same column")
    try:
        fmt, notes = detect(frame, test_csv.name, id_column, label_column, classes, cfg.submit)
    except ValueError as err:
        raise InputError(str(err), source=str(test_csv)) from None
    for note in notes:
        print(f"note: {test_csv}: {note}", file=sys.stderr, flush=True)
    return dataclasses.replace(fmt, int_labels=int_labels, test_csv=cfg.test_csv, test_images=cfg.test_images,
                               task=cfg.task, separator=cfg.label_separator)


def submission_now(cfg: DataConfig, classes: list[str]) -> tuple[SubmissionFormat, list[str]] | None:
    """The grid's submission format and test ids as its files say now (the ensemble job's: a grid whose trials are
    all reused opens no new grid run, and its test CSV may be another sample of the same rows); None without a
    test CSV."""
    root = Path(cfg.root)
    if cfg.test_csv is None or not (root / cfg.test_csv).is_file():
        return None
    train_csv = _file(root, cfg.train_csv, "data.train_csv")
    header = read_csv(train_csv, set(), dtype=str, keep_default_na=False, nrows=1)
    id_column = _column(header, cfg.id_column, ID_NAMES, 0, "data.id_column", "image id", train_csv)
    label_column = _column(header, cfg.label_column, LABEL_NAMES, 1, "data.label_column", "label", train_csv)
    frame = read_csv(root / cfg.test_csv, set(), dtype=str, keep_default_na=False)
    int_labels = cfg.task == "multiclass" and all(c.lstrip("-").isdigit() for c in classes)  # as labels() decided
    return _format(frame, cfg, id_column, label_column, classes, int_labels), frame[id_column].tolist()


def test_rows(root: Path, fmt) -> pd.DataFrame:
    """A competition root's test rows for `fmt` (what predict reads): row_id, image_path, rel_path (the id)."""
    test_csv = root / fmt.test_csv
    frame = read_csv(test_csv, set(), dtype=str, keep_default_na=False)
    _require(frame, [fmt.id_column], "the model's id column", test_csv)
    return _test_table(frame, test_csv, root, fmt.id_column, fmt.test_images, "the model's test_images")


def labels(values: pd.Series, column: str, csv: Path) -> tuple[np.ndarray, list[str], bool]:
    """(target per row, class names, whether the labels are integers): classes sorted (integers numerically)."""
    text = values.astype(str).str.strip()
    empty = np.flatnonzero(text.eq("").to_numpy())
    if len(empty):
        raise InputError(f"line {empty[0] + 2}: empty label in column {column!r} ({len(empty)} row(s) have none); give "
                         f"every training row a label, or remove the rows", source=str(csv))
    numbers = pd.to_numeric(text, errors="coerce")
    int_labels = bool(numbers.notna().all() and (numbers % 1 == 0).all())
    if int_labels:
        uniques = sorted(set(numbers.astype(np.int64)))
        classes = [str(v) for v in uniques]
        text = numbers.astype(np.int64).astype(str)
    else:
        classes = sorted(text.unique())
    if len(classes) < 2:
        raise InputError(f"column {column!r} holds {len(classes)} class(es) {classes}; a classifier needs at least 2 "
                         f"(is data.label_column the right column?)", source=str(csv))
    index = {name: k for k, name in enumerate(classes)}
    return text.map(index).to_numpy(np.int64), classes, int_labels


def tag_sets(values: pd.Series, separator: str, column: str, csv: Path) -> tuple[list[str], list[str]]:
    """(each row's tags as their indexes, space-separated: the tables' `tags` column; the sorted tag names) of a
    label column holding `separator`-separated tags (an empty cell: no tag)."""
    rows = [[t.strip() for t in str(v).split(separator) if t.strip()] for v in values]
    classes = sorted({t for row in rows for t in row})
    if len(classes) < 2:
        raise InputError(f"column {column!r} holds {len(classes)} tag(s) {classes} separated by {separator!r}; a "
                         f"multilabel task needs at least 2 (is data.label_separator right?)", source=str(csv))
    index = {name: k for k, name in enumerate(classes)}
    return [" ".join(str(k) for k in sorted({index[t] for t in row})) for row in rows], classes


def resolve_ids(ids: list, folder: Path, csv: Path, column: str, key: str) -> tuple[list[str], list[str]]:
    """(absolute path, path relative to `folder`) of each id's image: the id itself when that file exists, else the
    one image file `<id>.<ext>`. Ids cannot leave `folder`; missing or ambiguous ids are one InputError."""
    stems: dict[str, list[str]] | None = None
    paths, rel, problems = [], [], []
    for i, value in enumerate(ids):
        name = str(value).strip()
        where = f"{csv} line {i + 2}"
        path = safe_join(folder, name, where)
        if not os.path.isfile(path):
            stems = _stems(folder) if stems is None else stems
            found = stems.get(Path(name).as_posix(), [])
            if len(found) != 1:
                problems.append(f"line {i + 2}: {name!r} " + (f"matches {len(found)} files ({', '.join(found[:3])}); name "
                                                               f"the file with its extension" if found else
                                                               f"has no file {name} or {name}.<ext>"))
                continue
            path = safe_join(folder, found[0], where)
        paths.append(path)
        rel.append(Path(path).relative_to(os.path.abspath(folder)).as_posix())
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"{len(problems)} of {len(ids)} ids in column {column!r} have no image in {folder} "
                         f"({key}):\n  {shown}\nSet {key} to the folder that holds them, or data.id_column to the "
                         f"column that names them ({DOCS})", source=str(csv))
    return paths, rel


def _stems(folder: Path) -> dict[str, list[str]]:
    """Relative path without its suffix -> the image files that have it (hidden files skipped)."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts) and path.is_file():
            found.setdefault(rel.with_suffix("").as_posix(), []).append(rel.as_posix())
    return found


def _column(frame: pd.DataFrame, given: str | None, names: tuple[str, ...], position: int, key: str, what: str,
            csv: Path) -> str:
    """The column `key` names, or the one a new user's CSV most likely means by it."""
    if given is not None:
        _require(frame, [given], key, csv)
        return given
    columns = [str(c) for c in frame.columns]
    named = [c for c in columns if c.lower() in names]
    if len(named) == 1:
        return named[0]
    if len(columns) == 2 or (position == 0 and columns):
        return columns[position]
    raise InputError(f"which column holds the {what}? found {', '.join(columns)}; set {key} ({DOCS})", source=str(csv))


def _require(frame: pd.DataFrame, columns: list[str], key: str, csv: Path, also: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"missing column {missing[0]!r} ({key}{'; ' + also if also else ''}); found "
                         f"{', '.join(map(str, frame.columns))}: set {key} to one of them ({DOCS})", source=str(csv))


def _file(root: Path, name: str, key: str) -> Path:
    path = root / name
    if not path.is_file():
        csvs = sorted(p.name for p in root.glob("*.csv"))
        raise InputError(f"{key}: {path} not found; CSV files in {root}: {', '.join(csvs) or 'none'} ({DOCS})")
    return path


def _folder(root: Path, name: str, key: str) -> Path:
    path = Path(safe_join(root, name, key))
    if not path.is_dir():
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise InputError(f"{key}: folder {path} not found; folders in {root}: {', '.join(folders) or 'none'} ({DOCS})")
    return path
