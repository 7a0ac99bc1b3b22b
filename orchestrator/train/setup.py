"""A trial's rows, transforms, model and loaders, built without Ray.

The Train loop, the prediction task and benchmarks/gpu_step.py all start from
`build_trial`, so what a trial trains on and what its predictions see cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from orchestrator.config import TrialConfig
from orchestrator.data.dataset import ImageDataset
from orchestrator.data.transforms import build_transforms
from orchestrator.storage import read_parquet
from orchestrator.train.models import create_model, normalization


@dataclass
class TrialSetup:
    trial: TrialConfig
    model: torch.nn.Module  # on the CPU, fresh (or pretrained) weights
    train_rows: pd.DataFrame  # rows of the other folds (and the holdout's train-only rows)
    val_rows: pd.DataFrame  # this fold's rows: validation and OOF predictions
    train_transform: Any
    eval_transform: Any

    def class_counts(self) -> np.ndarray:
        """Training rows per class (class weights, `balanced`)."""
        return np.bincount(self.train_rows["target"], minlength=self.trial.tables.num_classes)

    def train_set(self) -> ImageDataset:
        return ImageDataset(self.train_rows["image_path"].tolist(), self.train_rows["target"].tolist(), self.train_transform)

    def val_set(self) -> ImageDataset:
        return ImageDataset(self.val_rows["image_path"].tolist(), self.val_rows["target"].tolist(), self.eval_transform)

    def test_rows(self) -> pd.DataFrame | None:
        return read_parquet(self.trial.tables.test_path) if self.trial.tables.test_path else None

    def eval_loader(self, rows: pd.DataFrame) -> torch.utils.data.DataLoader:
        """Rows in order, framed for evaluation, in batches twice the training size (no gradients to hold)."""
        dataset = ImageDataset(rows["image_path"].tolist(), None, self.eval_transform)
        return torch.utils.data.DataLoader(dataset, batch_size=self.trial.train.batch_size * 2)

    def train_loader(self) -> torch.utils.data.DataLoader:
        workers = loader_workers(self.trial)
        train_set = self.train_set()
        return torch.utils.data.DataLoader(
            train_set, batch_size=self.trial.train.batch_size, shuffle=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
            drop_last=len(train_set) > self.trial.train.batch_size,  # a last batch of 1 breaks BatchNorm
        )


def loader_workers(trial: TrialConfig) -> int:
    if trial.data.loader_workers is not None:
        return trial.data.loader_workers
    return max(0, int(trial.resources.cpus_per_worker) - 1)


def build_trial(trial: TrialConfig, pretrained: bool | None = None) -> TrialSetup:
    """Everything a (config, fold) trial works on; `pretrained=False` skips the hub download (a checkpoint follows)."""
    torch.set_num_threads(max(1, int(trial.resources.cpus_per_worker)))
    model = create_model(trial.model.name, trial.tables.num_classes,
                         trial.model.pretrained if pretrained is None else pretrained, trial.model.drop_rate)
    if trial.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rows = read_parquet(trial.tables.folds_path)
    train_tf, eval_tf = build_transforms(trial.train.augment, trial.data.image_size, *normalization(model),
                                         invert=trial.data.invert)
    return TrialSetup(trial, model, rows[rows["fold"] != trial.fold], rows[rows["fold"] == trial.fold], train_tf, eval_tf)
