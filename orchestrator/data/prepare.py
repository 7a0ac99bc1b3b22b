"""Once per grid, on the driver: load the source, assign folds, write the tables trials read."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import GridConfig, TrialTables
from orchestrator.data.folds import assign_folds
from orchestrator.data.sources import SOURCES, DataTables


@dataclass
class PreparedData:
    tables: DataTables
    trial_tables: TrialTables
    data_dir: Path  # holds folds.parquet, test.parquet, classes.json


def grid_storage(grid: GridConfig) -> Path:
    """Absolute storage folder of this grid (Ray results, fold tables)."""
    return Path(os.path.abspath(grid.tracking.storage)) / grid.name


def data_fingerprint(tables: DataTables) -> str:
    """Changes when a row, label, group, class or test image changes, so reruns retrain on changed data.

    (Image bytes are not read: an image replaced under the same path goes unnoticed.)
    """
    digest = hashlib.sha1(json.dumps(tables.classes).encode())
    for frame in (tables.train, tables.test):
        if frame is not None:
            columns = [c for c in ("image_path", "target", "group") if c in frame.columns]
            digest.update(frame[columns].to_csv(index=False).encode())
    return digest.hexdigest()[:12]


def prepare_data(grid: GridConfig) -> PreparedData:
    tables = SOURCES[grid.data.source].load(grid.data)
    train = tables.train.copy()
    train["fold"] = assign_folds(train, grid.data.folds, grid.seed)
    data_dir = grid_storage(grid) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    folds_path = data_dir / "folds.parquet"
    train.to_parquet(folds_path, index=False)
    test_path = None
    if tables.test is not None:
        test_path = data_dir / "test.parquet"
        tables.test.to_parquet(test_path, index=False)
    (data_dir / "classes.json").write_text(json.dumps(tables.classes))
    trial_tables = TrialTables(folds_path=str(folds_path), test_path=str(test_path) if test_path else None,
                               num_classes=len(tables.classes), fingerprint=data_fingerprint(tables))
    return PreparedData(DataTables(train, tables.test, tables.classes), trial_tables, data_dir)
