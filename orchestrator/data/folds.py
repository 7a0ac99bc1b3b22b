"""Fold assignment: computed once per grid from the seed, so reruns get identical folds."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from orchestrator.data.tables import multi_hot
from orchestrator.errors import InputError

if TYPE_CHECKING:  # a type only: config imports the data package (its source registry)
    from orchestrator.config import FoldsConfig

TRAIN_ONLY = -1  # holdout: rows that are never validation


def assign_folds(train: pd.DataFrame, cfg: FoldsConfig, seed: int) -> np.ndarray:
    """One fold index per row: the fold in which the row is validation (TRAIN_ONLY: never)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

    if "tags" in train.columns:
        return tag_folds(train, cfg, seed)
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
        with warnings.catch_warnings():  # small classes: class_size_warnings says which, in words
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            for k, (_, val) in enumerate(splits):
                folds[val] = k
    except ValueError as err:
        raise InputError(f"data.folds: cannot make {cfg.n_splits} {cfg.kind} folds: {err}") from None
    return folds


def tag_folds(train: pd.DataFrame, cfg: FoldsConfig, seed: int) -> np.ndarray:
    """Folds of a multilabel table by iterative stratification (Sechidis et al. 2011, the iterative-stratification
    package): each tag's rows spread over the folds as evenly as they can. Grouped: the groups are stratified by
    the tags any of their rows has, and each row follows its group."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

    hot = multi_hot(train["tags"], _tag_count(train))
    units, hot_units = np.arange(len(train)), hot
    if cfg.kind == "stratified_group":
        if train["group"].isna().any():
            raise InputError("data.folds.kind: stratified_group needs a group per row (data.group_column)")
        groups, units = np.unique(train["group"].astype(str).to_numpy(), return_inverse=True)
        hot_units = np.zeros((len(groups), hot.shape[1]), dtype=np.float32)
        np.maximum.at(hot_units, units, hot)
    if cfg.kind == "holdout":
        splits = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=1 / cfg.n_splits, random_state=seed)
    else:
        splits = MultilabelStratifiedKFold(n_splits=cfg.n_splits, shuffle=True, random_state=seed)
    if len(hot_units) < cfg.n_splits:
        raise InputError(f"data.folds: cannot make {cfg.n_splits} folds of {len(hot_units)} "
                         f"{'groups' if cfg.kind == 'stratified_group' else 'rows'}")
    unit_fold = np.full(len(hot_units), TRAIN_ONLY, dtype=int)
    for k, (_, val) in enumerate(splits.split(np.zeros(len(hot_units)), hot_units)):
        unit_fold[val] = k
    return unit_fold[units] if cfg.kind == "stratified_group" else unit_fold


def _tag_count(train: pd.DataFrame) -> int:
    return max((int(k) for value in train["tags"].astype(str) for k in value.split()), default=0) + 1


def class_size_warnings(train: pd.DataFrame, cfg: FoldsConfig, classes: list[str]) -> list[str]:
    """Classes with fewer images (persons / groups, for grouped folds) than folds, named, with what to do.

    Some folds then validate without them, and a class of one is missing from the
    training rows of the fold that validates it. A holdout split needs two of each
    class (one to train on, one to validate), so a class of one is an InputError there.
    """
    unit = "group" if cfg.kind == "stratified_group" else "image"
    if "tags" in train.columns:  # a tag's rows (or groups) are the rows that have it
        hot = pd.DataFrame(multi_hot(train["tags"], len(classes)))
        keys = train["group"].astype(str) if unit == "group" and train["group"].notna().all() else train.index
        sizes = (hot.groupby(keys.to_numpy()).max() > 0).sum()
    elif unit == "group" and train["group"].notna().all():
        sizes = train.groupby("target")["group"].nunique()
    else:
        sizes = train.groupby("target").size()
    needed = 2 if cfg.kind == "holdout" else cfg.n_splits
    small = [(classes[int(k)], int(n)) for k, n in sizes.items() if n < needed]
    if not small:
        return []
    shown = ", ".join(f"{name!r} ({n})" for name, n in small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
    if cfg.kind == "holdout":
        raise InputError(f"data.folds: a holdout split needs at least 2 training {unit}s per class; these have fewer: {shown}. "
                         f"Add {unit}s of these classes or remove their rows")
    singles = [name for name, n in small if n == 1]
    lonely = (f" {len(singles)} class(es) have a single {unit}: the fold that validates it trains without that class."
              if singles else "")
    advice = (f"data.folds: {len(small)} class(es) have fewer training {unit}s than the {cfg.n_splits} folds: {shown}; "
              f"some folds validate without them.{lonely} Add {unit}s, lower data.folds.n_splits, or use "
              f"folds.kind: holdout (one trained fold, which sees every class with 2 or more {unit}s)")
    return [advice]
