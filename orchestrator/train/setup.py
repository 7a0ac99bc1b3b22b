"""A trial's rows, transforms, model and loaders, built without Ray.

The Train loop, the prediction task and benchmarks/gpu_step.py all start from
`build_trial`, so what a trial trains on and what its predictions see cannot drift.
Images come from this node's decode-once cache (data/cache.py) unless `data.cache`
is off or the disk could not hold it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from orchestrator.config import TrialConfig
from orchestrator.data import cache
from orchestrator.data.dataset import ImageDataset
from orchestrator.data.images import read_image
from orchestrator.data.tables import multi_hot
from orchestrator.data.transforms import Normalize, build_transforms
from orchestrator.storage import read_parquet
from orchestrator.train.models import create_model, normalization


@dataclass
class TrialSetup:
    trial: TrialConfig
    model: torch.nn.Module  # on the CPU, fresh (or pretrained) weights
    train_rows: pd.DataFrame  # rows of the other folds (and the holdout's train-only rows); index = row in the folds table
    val_rows: pd.DataFrame  # this fold's rows: validation and OOF predictions
    train_transform: Any
    eval_transform: Any
    normalize: Normalize  # uint8 batches -> the model's input, on its device
    train_cache: Path | None = None  # the folds table's images, decoded once, in table order
    test_cache: Path | None = None  # the test table's
    augment_level: torch.Tensor | None = None  # train.curriculum: the share of images augmented (shared with loader workers)

    def start_epoch(self, epoch: int) -> None:
        """Set what changes with the epoch in the train loader's pipeline (before the epoch's batches are drawn)."""
        if self.augment_level is not None:
            self.augment_level.fill_(self.trial.train.curriculum.level(epoch))

    def class_counts(self) -> np.ndarray:
        """Training rows per class, or per tag (class weights, `balanced`)."""
        if self.trial.data.task == "multilabel":
            return self.targets(self.train_rows).sum(0).astype(np.int64)
        return np.bincount(self.train_rows["target"], minlength=self.trial.tables.num_classes)

    def targets(self, rows: pd.DataFrame) -> np.ndarray:
        """`rows`' targets: class indices (rows,), or a multilabel task's multi-hot tags (rows, tags)."""
        if self.trial.data.task == "multilabel":
            return multi_hot(rows["tags"], self.trial.tables.num_classes)
        return rows["target"].to_numpy()

    def dataset(self, rows: pd.DataFrame, transform: Any, test: bool = False) -> ImageDataset:
        """`rows` of the folds table (or, test=True, of the test table), read from the cache when there is one."""
        targets = None if test else self.targets(rows)
        found = self.test_cache if test else self.train_cache
        if found is None:
            return ImageDataset(rows["image_path"].tolist(), targets, transform)
        return ImageDataset(rows.index.tolist(), targets, transform, read=cache.CachedImages(str(found)).__getitem__)

    def train_set(self) -> ImageDataset:
        return self.dataset(self.train_rows, self.train_transform)

    def val_set(self) -> ImageDataset:
        return self.dataset(self.val_rows, self.eval_transform)

    def test_rows(self) -> pd.DataFrame | None:
        return read_parquet(self.trial.tables.test_path) if self.trial.tables.test_path else None

    def loader(self, dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               persistent: bool = False) -> torch.utils.data.DataLoader:
        """Batches of uint8 images, decoded or augmented in the trial's spare CPUs (`loader_workers`), pinned on a GPU node."""
        workers = loader_workers(self.trial)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                           num_workers=workers, persistent_workers=persistent and workers > 0,
                                           pin_memory=torch.cuda.is_available())

    def eval_loader(self, rows: pd.DataFrame, test: bool = False) -> torch.utils.data.DataLoader:
        """Rows in order, framed for evaluation, in batches twice the training size (no gradients to hold)."""
        return self.loader(self.dataset(rows, self.eval_transform, test), self.trial.train.batch_size * 2)

    def val_loader(self, rank: int = 0, world: int = 1) -> torch.utils.data.DataLoader:
        """This rank's stride of the fold's validation rows (every epoch; its workers stay up between epochs)."""
        val_set = self.val_set()
        shard = torch.utils.data.Subset(val_set, range(rank, len(val_set), world))
        return self.loader(shard, self.trial.train.batch_size * 2, persistent=True)

    def train_loader(self) -> torch.utils.data.DataLoader:
        train_set = self.train_set()
        return self.loader(train_set, self.trial.train.batch_size, shuffle=True, persistent=True,
                           drop_last=len(train_set) > self.trial.train.batch_size)  # a last batch of 1 breaks BatchNorm


def loader_workers(trial: TrialConfig) -> int:
    if trial.data.loader_workers is not None:
        return trial.data.loader_workers
    return max(0, int(trial.resources.cpus_per_worker) - 1)


def node_caches(trial: TrialConfig, rows: pd.DataFrame, framing: cache.Framing) -> tuple[Path | None, Path | None]:
    """This node's cache files of the train and test images (built here if this node has none yet)."""
    test_paths = read_parquet(trial.tables.test_path)["image_path"].tolist() if trial.tables.test_path else None
    return cache.ensure_tables(rows["image_path"].tolist(), test_paths, (trial.tables.train_files, trial.tables.test_files),
                               framing, max(1, int(trial.resources.cpus_per_worker)), progress=False)


def eval_pipeline(trial: TrialConfig) -> tuple[Callable[[Any], np.ndarray], Any]:
    """(read, transform) that frame one image (a path or a file object) as the trial's test predictions saw it.

    With the cache on, those images came from `read_framed` (the cache's own decoder) and
    the eval transform that follows it, so a served model uses the same two steps and
    gives the same pixels; with it off, the plain decode and the whole eval transform.
    """
    framing = cache.framing_for(trial.data, trial.train.augment)
    side = framing.side if framing is not None else None
    _, eval_tf = build_transforms(trial.train.augment, trial.data.image_size, invert=trial.data.invert, cached_side=side)
    if framing is None:
        return read_image, eval_tf
    return functools.partial(cache.read_framed, framing=framing), eval_tf


def build_trial(trial: TrialConfig, pretrained: bool | None = None) -> TrialSetup:
    """Everything a (config, fold) trial works on; `pretrained=False` skips the hub download (a checkpoint follows)."""
    torch.set_num_threads(max(1, int(trial.resources.cpus_per_worker)))
    start_from = trial.model.pretrained or trial.model.checkpoint is not None  # a checkpoint file is pretrained weights
    model = create_model(trial.model.name, trial.tables.num_classes, start_from if pretrained is None else pretrained,
                         trial.model.drop_rate, trial.model.checkpoint, trial.model.heads)
    if trial.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rows = read_parquet(trial.tables.folds_path)
    framing = cache.framing_for(trial.data, trial.train.augment)
    train_cache, test_cache = node_caches(trial, rows, framing) if framing is not None else (None, None)
    side = framing.side if train_cache is not None else None
    curriculum = trial.train.curriculum
    level = torch.full((1,), curriculum.level(0)).share_memory_() if curriculum is not None else None
    train_tf, eval_tf = build_transforms(trial.train.augment, trial.data.image_size, invert=trial.data.invert,
                                         cached_side=side, level=level)
    return TrialSetup(trial, model, rows[rows["fold"] != trial.fold], rows[rows["fold"] == trial.fold], train_tf, eval_tf,
                      Normalize(*normalization(model)), train_cache, test_cache, level)
