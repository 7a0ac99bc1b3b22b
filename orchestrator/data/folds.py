"""Fold assignment: computed once per grid from the seed, so reruns get identical folds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.config import FoldsConfig
from orchestrator.errors import InputError

TRAIN_ONLY = -1  # holdout: rows that are never validation


def assign_folds(train: pd.DataFrame, cfg: FoldsConfig, seed: int) -> np.ndarray:
    """One fold index per row: the fold in which the row is validation (TRAIN_ONLY: never)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

    targets = train["target"].to_numpy()
    folds = np.full(len(train), TRAIN_ONLY, dtype=int)
    try:
        if cfg.kind == "holdout":
            _, val = train_test_split(np.arange(len(train)), test_size=1 / cfg.n_splits, stratify=targets, random_state=seed)
            folds[val] = 0
            return folds
        if cfg.kind == "stratified_group":
            groups = train["group"]
            if groups.isna().any():
                raise InputError("data.folds.kind: stratified_group needs a group per row (a `group` column in train.csv, or the mask source)")
            splitter = StratifiedGroupKFold(n_splits=cfg.n_splits, shuffle=True, random_state=seed)
            splits = splitter.split(np.zeros(len(train)), targets, groups.to_numpy())
        else:
            splits = StratifiedKFold(n_splits=cfg.n_splits, shuffle=True, random_state=seed).split(np.zeros(len(train)), targets)
        for k, (_, val) in enumerate(splits):
            folds[val] = k
    except ValueError as err:
        raise InputError(f"data.folds: cannot make {cfg.n_splits} {cfg.kind} folds: {err}") from None
    return folds
