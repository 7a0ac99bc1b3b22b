"""Once per grid, on the driver: load the source, assign folds, write the tables trials read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from orchestrator import storage
from orchestrator.config import GridConfig, TrialTables
from orchestrator.data.folds import assign_folds
from orchestrator.data.sources import SOURCES, DataTables


@dataclass
class PreparedData:
    tables: DataTables  # train with its fold column
    trial_tables: TrialTables


def grid_storage(grid: GridConfig) -> str:
    """This grid's storage folder or URI (Ray results, fold tables): `<tracking.storage>/<grid name>`."""
    return f"{storage.resolve(grid.tracking.storage)}/{grid.name}"


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
    data_dir = f"{grid_storage(grid)}/data"  # trials on every node read these
    folds_path = f"{data_dir}/folds.parquet"
    storage.write_parquet(train, folds_path)
    test_path = None
    if tables.test is not None:
        test_path = f"{data_dir}/test.parquet"
        storage.write_parquet(tables.test, test_path)
    trial_tables = TrialTables(folds_path=folds_path, test_path=test_path,
                               num_classes=len(tables.classes), fingerprint=data_fingerprint(tables))
    return PreparedData(DataTables(train, tables.test, tables.classes), trial_tables)
