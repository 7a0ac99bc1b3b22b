"""Once per grid, on the driver: load the source, assign folds, write the tables trials read."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass

import pandas as pd

from orchestrator import storage
from orchestrator.config import GridConfig, TrialTables
from orchestrator.data import cache
from orchestrator.data.folds import assign_folds, class_size_warnings
from orchestrator.data.pseudo import select, with_pseudo
from orchestrator.data.sources import SOURCES
from orchestrator.data.tables import DataTables
from orchestrator.errors import InputError


@dataclass
class PreparedData:
    tables: DataTables  # train with its fold column (and a pseudo round's labelled test rows, fold TRAIN_ONLY)
    trial_tables: TrialTables
    pseudo: pd.DataFrame | None = None  # the pseudo-labelled test rows: row_id (of the test table), target, confidence


def data_fingerprint(tables: DataTables) -> str:
    """Changes when a row, label, group, class or test image changes, so reruns retrain on changed data; not when
    the data root moves (image paths count relative to it: a laptop's ~/data and a cluster's /mnt/data hold the
    same trials).

    (Image bytes are not read: an image replaced under the same path goes unnoticed.)
    """
    digest = hashlib.sha1(json.dumps(tables.classes).encode())
    for frame in (tables.train, tables.test):
        if frame is not None:
            path = "rel_path" if "rel_path" in frame.columns else "image_path"
            columns = [c for c in (path, "target", "group", "tags") if c in frame.columns]
            digest.update(frame[columns].to_csv(index=False).encode())
    return digest.hexdigest()[:12]


def load_checked(grid: GridConfig) -> DataTables:
    """The source's tables, every row and image checked; small classes are named on stderr."""
    tables = SOURCES[grid.data.source].load(grid.data)
    for line in class_size_warnings(tables.train, grid.data.folds, tables.classes):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return tables


def prepare_data(grid: GridConfig, teacher: pd.DataFrame | None = None) -> PreparedData:
    """Check the source, assign folds and write the tables; `teacher`: a pseudo round's ensemble test probabilities."""
    tables = load_checked(grid)
    train = tables.train.copy()
    train["fold"] = assign_folds(train, grid.data.folds, grid.seed)
    chosen = None
    if teacher is not None:
        if tables.test is None:
            raise InputError(f"pseudo: the {grid.data.source} source at {grid.data.root} has no test set to pseudo-label")
        chosen = select(teacher, grid.pseudo.threshold, grid.pseudo.top_fraction)
        if chosen.empty:
            top = teacher.filter(like="prob_").to_numpy().max(1).max()
            raise InputError(f"pseudo.threshold: no test row of ensemble run {grid.pseudo.teacher} reaches "
                             f"{grid.pseudo.threshold} (the most confident is {top:.3f}); lower it, or give pseudo.top_fraction")
        train = with_pseudo(train, tables.test, chosen)
        tables = DataTables(train, tables.test, tables.classes, tables.submission, tables.task)
    layout = grid.layout  # trials on every node read these tables
    storage.write_parquet(train, layout.folds_table)
    if tables.test is not None:
        storage.write_parquet(tables.test, layout.test_table)
    trial_tables = TrialTables(folds_path=layout.folds_table, test_path=layout.test_table if tables.test is not None else None,
                               num_classes=len(tables.classes), fingerprint=data_fingerprint(tables),
                               train_files=cache.files_fingerprint(train["image_path"].tolist()),
                               test_files=cache.files_fingerprint(tables.test["image_path"].tolist()) if tables.test is not None else "")
    return PreparedData(DataTables(train, tables.test, tables.classes, tables.submission, tables.task), trial_tables, chosen)


def warm_caches(prepared: PreparedData, framings: set[cache.Framing]) -> None:
    """This node's decode-once caches, before the first trial: one per framing the planned trials use.

    (Trials on other nodes build their node's copy on first use.)
    """
    tables, files = prepared.tables, prepared.trial_tables
    test_paths = tables.test["image_path"].tolist() if tables.test is not None else None
    for framing in sorted(framings, key=lambda f: f.slug):
        cache.ensure_tables(tables.train["image_path"].tolist(), test_paths, (files.train_files, files.test_files), framing)
