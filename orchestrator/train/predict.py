"""Inference: class probabilities for a set of rows, and a finished trial's OOF + test predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from orchestrator.config import TrialConfig
from orchestrator.data.dataset import ImageDataset


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> torch.Tensor:
    """Logits for every item of `loader`, in loader order, on the CPU."""
    model.eval()
    outputs = [model(images.to(device, non_blocking=True)).float().cpu() for images, _ in loader]
    return torch.cat(outputs) if outputs else torch.empty(0)


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


def probs_frame(probs: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    """(row_id, ..., prob_0..prob_{C-1}) as one parquet-ready frame."""
    frame = pd.DataFrame(columns)
    return pd.concat([frame, pd.DataFrame(probs.astype(np.float32), columns=prob_columns(probs.shape[1]))], axis=1)


def predict_trial(trial: TrialConfig, checkpoint_dir: str, device: torch.device | None = None) -> dict[str, pd.DataFrame]:
    """The trial's best checkpoint predicts its fold's validation rows (OOF) and the test rows."""
    from orchestrator.data.transforms import build_transforms
    from orchestrator.train.checkpoint import load_weights
    from orchestrator.train.models import create_model, normalization

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, int(trial.resources.cpus_per_worker)))
    model = create_model(trial.model.name, trial.tables.num_classes, pretrained=False)
    load_weights(checkpoint_dir, model)
    model.to(device)
    _, eval_tf = build_transforms(trial.train.augment, trial.data.image_size, *normalization(model))

    def run(paths: list[str]) -> np.ndarray:
        loader = torch.utils.data.DataLoader(ImageDataset(paths, None, eval_tf), batch_size=trial.train.batch_size * 2)
        return torch.softmax(predict_logits(model, loader, device), dim=1).numpy()

    rows = pd.read_parquet(trial.tables.folds_path)
    val = rows[rows["fold"] == trial.fold]
    out = {"oof": probs_frame(run(val["image_path"].tolist()), row_id=val["row_id"].to_numpy(),
                              fold=val["fold"].to_numpy(), target=val["target"].to_numpy())}
    if trial.tables.test_path:
        test = pd.read_parquet(trial.tables.test_path)
        out["test"] = probs_frame(run(test["image_path"].tolist()), row_id=test["row_id"].to_numpy(),
                                  image_path=test["rel_path"].to_numpy())
    return out
