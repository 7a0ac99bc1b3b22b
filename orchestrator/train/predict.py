"""Inference: class probabilities for a set of rows, and a finished trial's OOF + test predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from orchestrator.config import TrialConfig, TtaConfig
from orchestrator.data.dataset import ImageDataset
from orchestrator.storage import read_parquet


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> torch.Tensor:
    """Logits for every item of `loader`, in loader order, on the CPU."""
    model.eval()
    outputs = [model(images.to(device, non_blocking=True)).float().cpu() for images, _ in loader]
    return torch.cat(outputs) if outputs else torch.empty(0)


def zoom(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Zoom in by `scale` about the centre; the output keeps the input size (fixed-size models work)."""
    if scale == 1.0:
        return images
    size = images.shape[-1]
    big = torch.nn.functional.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
    top = (big.shape[-2] - images.shape[-2]) // 2
    left = (big.shape[-1] - size) // 2
    return big[..., top:top + images.shape[-2], left:left + size]


def tta_views(images: torch.Tensor, tta: TtaConfig | None) -> list[torch.Tensor]:
    """The batch as the model sees it under each TTA view (just the batch without TTA)."""
    if tta is None:
        return [images]
    views = []
    for scale in tta.scales:
        base = zoom(images, scale)
        views += [base] + ([base.flip(-1)] if tta.hflip else []) + ([base.flip(-2)] if tta.vflip else [])
    return views


@torch.no_grad()
def predict_probs(model: torch.nn.Module, loader, device: torch.device, tta: TtaConfig | None = None) -> np.ndarray:
    """Softmax probabilities for every item of `loader`, averaged over the TTA views."""
    model.eval()
    out = []
    for images, _ in loader:
        images = images.to(device, non_blocking=True)
        out.append(torch.stack([model(view).float().softmax(1) for view in tta_views(images, tta)]).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def oof_metrics(probs: np.ndarray, targets: np.ndarray, suffix: str = "") -> dict[str, float]:
    from sklearn.metrics import f1_score

    predicted = probs.argmax(1)
    return {f"oof_acc{suffix}": float((predicted == targets).mean()),
            f"oof_f1{suffix}": float(f1_score(targets, predicted, average="macro"))}


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


def probs_frame(probs: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    """(row_id, ..., prob_0..prob_{C-1}) as one parquet-ready frame."""
    frame = pd.DataFrame(columns)
    return pd.concat([frame, pd.DataFrame(probs.astype(np.float32), columns=prob_columns(probs.shape[1]))], axis=1)


def predict_trial(trial: TrialConfig, checkpoint_dir: str, device: torch.device | None = None) -> dict:
    """The trial's best checkpoint predicts its fold's validation rows (OOF) and the test rows.

    Returns {"oof": frame, "test": frame (if a test set exists), "metrics": {...}}; with
    TTA the frames hold TTA probabilities and the metrics hold the OOF scores without
    and with it (`oof_acc`, `oof_acc_tta`, ...), so its effect is on record.
    """
    from orchestrator.data.transforms import build_transforms
    from orchestrator.train.checkpoint import load_weights
    from orchestrator.train.models import create_model, normalization

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, int(trial.resources.cpus_per_worker)))
    model = create_model(trial.model.name, trial.tables.num_classes, pretrained=False)
    load_weights(checkpoint_dir, model)
    model.to(device)
    _, eval_tf = build_transforms(trial.train.augment, trial.data.image_size, *normalization(model), invert=trial.data.invert)

    def run(paths: list[str], tta: TtaConfig | None) -> np.ndarray:
        loader = torch.utils.data.DataLoader(ImageDataset(paths, None, eval_tf), batch_size=trial.train.batch_size * 2)
        return predict_probs(model, loader, device, tta)

    rows = read_parquet(trial.tables.folds_path)
    val = rows[rows["fold"] == trial.fold]
    targets = val["target"].to_numpy()
    oof = run(val["image_path"].tolist(), None)
    metrics = oof_metrics(oof, targets)
    if trial.tta is not None:
        oof = run(val["image_path"].tolist(), trial.tta)
        metrics.update(oof_metrics(oof, targets, "_tta"))
    out = {"oof": probs_frame(oof, row_id=val["row_id"].to_numpy(), fold=val["fold"].to_numpy(), target=targets),
           "metrics": metrics}
    if trial.tables.test_path:
        test = read_parquet(trial.tables.test_path)
        out["test"] = probs_frame(run(test["image_path"].tolist(), trial.tta), row_id=test["row_id"].to_numpy(),
                                  image_path=test["rel_path"].to_numpy())
    return out
