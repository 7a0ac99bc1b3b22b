"""Grad-CAM: where a trained model looked when it predicted a class (the `grad-cam` package on timm models).

CNNs are explained at their last feature stage (timm's `feature_info`); ViT-style
models, whose blocks output tokens, at the last block's first norm, with the patch
tokens reshaped into a map (the prefix tokens: class, distillation, registers,
dropped). A model neither fits raises `CamUnsupported`: the caller notes it and goes on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from orchestrator.config import TrialConfig


class CamUnsupported(ValueError):
    """This model has no layer Grad-CAM can explain here."""


def tokens_to_map(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, prefix + H*W, C) transformer tokens -> (B, C, H, W) for Grad-CAM."""
    patches = tokens[:, prefix:, :]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise CamUnsupported(f"{patches.shape[1]} patch tokens do not form a square map")
    return patches.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


MIN_MAP = 4  # cells per side a CNN's explained stage keeps: a 1x1 map (a 32 px image at stride 32) shows nothing


def cam_layer(model: torch.nn.Module, image_size: int) -> tuple[torch.nn.Module, Callable | None]:
    """(the layer to explain, the reshape transform its output needs or None) for `image_size` px inputs.

    A CNN is explained at its deepest feature stage whose map still has MIN_MAP cells per side.
    """
    from orchestrator.train.heads import ComposedHeads

    if isinstance(model, ComposedHeads):  # its layers are the backbone's (Grad-CAM still targets a composed class)
        return cam_layer(model.model, image_size)
    blocks = getattr(model, "blocks", None)
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is not None and blocks is not None and hasattr(blocks[-1], "norm1"):
        return blocks[-1].norm1, functools.partial(tokens_to_map, prefix=prefix)
    stages = [dict(stage) for stage in getattr(model, "feature_info", None) or []]
    if stages and all(stage.get("module") for stage in stages):
        wide = [s for s in stages if image_size // max(1, int(s.get("reduction", 1))) >= MIN_MAP] or stages[:1]
        return model.get_submodule(wide[-1]["module"]), None
    raise CamUnsupported(f"{type(model).__name__} has neither transformer blocks nor timm feature_info")


def gradcam_overlays(trial: TrialConfig, checkpoint_dir: str, paths: Sequence[str], explain: Sequence[int],
                     device: torch.device | None = None) -> list[np.ndarray]:
    """For each image `paths[i]`, the trial's model's Grad-CAM for class `explain[i]` over the image as the model
    saw it (HxWx3 uint8), from the checkpoint in `checkpoint_dir`."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from orchestrator.data.transforms import Normalize
    from orchestrator.train.checkpoint import load_weights
    from orchestrator.train.models import create_model, normalization
    from orchestrator.train.setup import eval_pipeline

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(trial.model.name, trial.tables.num_classes, pretrained=False, heads=trial.model.heads)
    load_weights(checkpoint_dir, model)
    model.to(device).eval()
    layer, reshape = cam_layer(model, trial.data.image_size)
    read, transform = eval_pipeline(trial)
    batch = torch.stack([_as_tensor(transform(image=read(p))["image"]) for p in paths])
    inputs = Normalize(*normalization(model))(batch.to(device))
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in explain])
    pixels = batch.permute(0, 2, 3, 1).float().numpy() / 255.0
    if pixels.shape[-1] == 1:
        pixels = pixels.repeat(3, axis=-1)
    return [show_cam_on_image(pixels[i], maps[i], use_rgb=True, image_weight=0.6) for i in range(len(paths))]


def _as_tensor(image: Any) -> torch.Tensor:
    return image if isinstance(image, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)
