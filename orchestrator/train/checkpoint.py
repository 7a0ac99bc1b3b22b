"""Checkpoint files: model weights apart from the training state, both loaded weights-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MODEL_FILE = "model.pt"  # state_dict of the bare (non-DDP) model: what predictions and MLflow need
STATE_FILE = "train_state.pt"  # optimizer, LR schedule, epoch, best score: what a resumed trial needs


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(folder: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    torch.save(unwrap(model).state_dict(), Path(folder) / MODEL_FILE)
    torch.save(state, Path(folder) / STATE_FILE)


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    unwrap(model).load_state_dict(torch.load(Path(folder) / MODEL_FILE, map_location="cpu", weights_only=True))


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
