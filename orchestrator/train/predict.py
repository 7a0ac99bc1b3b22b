"""Inference: class probabilities for a set of rows, and a finished trial's OOF + test predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from orchestrator.config import TrialConfig, TtaConfig
from orchestrator.scoring import fast_macro_f1

if TYPE_CHECKING:
    from orchestrator.train.setup import TrialSetup

Normalizer = Callable[[torch.Tensor], torch.Tensor] | None  # uint8 batch -> model input (None: the batch as is)


def model_input(images: torch.Tensor, device: torch.device, normalize: Normalizer) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return normalize(images) if normalize is not None else images


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                   normalize: Normalizer = None) -> torch.Tensor:
    """Logits for every item of `loader`, in loader order, on the CPU."""
    model.eval()
    outputs = [model(model_input(images, device, normalize)).float().cpu() for images, _ in loader]
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


def probabilities(logits: torch.Tensor, task: str = "multiclass") -> torch.Tensor:
    """A model's outputs as probabilities: a softmax over classes, or a multilabel task's sigmoid per tag."""
    return logits.float().sigmoid() if task == "multilabel" else logits.float().softmax(1)


@torch.no_grad()
def batch_probs(model: torch.nn.Module, images: torch.Tensor, device: torch.device, tta: TtaConfig | None = None,
                normalize: Normalizer = None, task: str = "multiclass") -> torch.Tensor:
    """Class (or tag) probabilities of one uint8 batch, averaged over the TTA views, on the CPU (`model` in eval
    mode)."""
    images = model_input(images, device, normalize)
    return torch.stack([probabilities(model(view), task) for view in tta_views(images, tta)]).mean(0).cpu()


def predict_probs(model: torch.nn.Module, loader, device: torch.device, tta: TtaConfig | None = None,
                  normalize: Normalizer = None, task: str = "multiclass") -> np.ndarray:
    """Class (or tag) probabilities for every item of `loader`, averaged over the TTA views."""
    model.eval()
    out = [batch_probs(model, images, device, tta, normalize, task) for images, _ in loader]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def oof_metrics(probs: np.ndarray, targets: np.ndarray, suffix: str = "") -> dict[str, float]:
    """A fold's OOF scores: accuracy and macro F1, or for multi-hot targets per-image F1 and mAP (tags at 0.5)."""
    if targets.ndim == 2:
        from orchestrator.metrics import f1_samples, mean_average_precision

        return {f"oof_f1_samples{suffix}": f1_samples(probs, targets), f"oof_map{suffix}": mean_average_precision(probs, targets)}
    predicted = probs.argmax(1)
    return {f"oof_acc{suffix}": float((predicted == targets).mean()),
            f"oof_f1{suffix}": fast_macro_f1(predicted, targets, probs.shape[1])}


def prob_columns(num_classes: int) -> list[str]:
    return [f"prob_{k}" for k in range(num_classes)]


def probs_frame(probs: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
    """(row_id, ..., prob_0..prob_{C-1}) as one parquet-ready frame."""
    frame = pd.DataFrame(columns)
    return pd.concat([frame, pd.DataFrame(probs.astype(np.float32), columns=prob_columns(probs.shape[1]))], axis=1)


def predict_trial(trial: TrialConfig, checkpoint_dir: str, device: torch.device | None = None) -> dict:
    """The trial's best checkpoint predicts its fold's validation rows (OOF) and the test rows (a prediction task)."""
    from orchestrator.train.checkpoint import load_weights
    from orchestrator.train.setup import build_trial

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setup = build_trial(trial, pretrained=False)
    load_weights(checkpoint_dir, setup.model)
    return predict_frames(setup, setup.model.to(device), device)


def predict_frames(setup: TrialSetup, model: torch.nn.Module, device: torch.device) -> dict:
    """`model` (on `device`) predicts the fold's validation rows (OOF) and the test rows.

    Returns {"oof": frame (not for a refit), "test": frame (if a test set exists), "metrics": {...}}; with
    TTA the frames hold TTA probabilities and the metrics hold the OOF scores without
    and with it (`oof_acc`, `oof_acc_tta`, ...), so its effect is on record.
    """
    trial = setup.trial
    out = {"metrics": {}} if trial.refit else oof_frames(setup, model, device)  # a refit has no OOF rows
    test = setup.test_rows()
    if test is not None:
        probs = predict_probs(model, setup.eval_loader(test, test=True), device, trial.tta, setup.normalize, trial.data.task)
        out["test"] = probs_frame(probs, row_id=test["row_id"].to_numpy(), image_path=test["rel_path"].to_numpy())
    return out


def oof_frames(setup: TrialSetup, model: torch.nn.Module, device: torch.device) -> dict:
    """{"oof": the fold's validation rows' probabilities, "metrics": their scores (and with TTA, without it)}."""
    trial, val, task = setup.trial, setup.val_rows, setup.trial.data.task
    targets = setup.targets(val)
    oof = predict_probs(model, setup.eval_loader(val), device, normalize=setup.normalize, task=task)
    metrics = oof_metrics(oof, targets)
    if trial.tta is not None:
        oof = predict_probs(model, setup.eval_loader(val), device, trial.tta, setup.normalize, task)
        metrics.update(oof_metrics(oof, targets, "_tta"))
    labels = {"target": val["target"].to_numpy(), **({"tags": val["tags"].to_numpy()} if task == "multilabel" else {})}
    return {"oof": probs_frame(oof, row_id=val["row_id"].to_numpy(), fold=val["fold"].to_numpy(), **labels),
            "metrics": metrics}


def save_frames(frames: dict, folder: str) -> None:
    """Write predict_frames' output under `folder` (a path or URI): oof/test parquet, metrics.json last."""
    import json

    from orchestrator.storage import join, write_parquet, write_text

    for name in ("oof", "test"):
        if name in frames:
            write_parquet(frames[name], join(folder, f"{name}.parquet"))
    write_text(json.dumps(frames["metrics"]), join(folder, "metrics.json"))


def load_frames(folder: str) -> dict:
    """What save_frames wrote."""
    import json

    from orchestrator.storage import exists, join, read_parquet, read_text

    frames = {"metrics": json.loads(read_text(join(folder, "metrics.json")))}
    for name in ("oof", "test"):  # a refit has no OOF, a source without a test set no test
        if exists(join(folder, f"{name}.parquet")):
            frames[name] = read_parquet(join(folder, f"{name}.parquet"))
    return frames
