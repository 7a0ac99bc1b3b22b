"""Test-time augmentation: views, their average, and the recorded effect."""

from __future__ import annotations

import numpy as np
import torch

from orchestrator.config import TtaConfig
from orchestrator.train.predict import oof_metrics, predict_probs, tta_views, zoom


def test_views_per_scale_and_flip():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert len(tta_views(images, None)) == 1
    views = tta_views(images, TtaConfig(hflip=True, vflip=True, scales=[1.0, 1.5]))
    assert len(views) == 6 and all(v.shape == images.shape for v in views)
    assert torch.equal(views[1], images.flip(-1)) and torch.equal(views[2], images.flip(-2))


def test_zoom_keeps_size_and_centre():
    images = torch.zeros(1, 1, 10, 10)
    images[..., 4:6, 4:6] = 1
    zoomed = zoom(images, 2.0)
    assert zoomed.shape == images.shape and zoomed[..., 3:7, 3:7].mean() > zoomed.mean()


class LeftRight(torch.nn.Module):
    """Class 0 when the left half is brighter: a horizontal flip swaps its answer."""

    def forward(self, x):
        left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2:].mean((1, 2, 3))
        return torch.stack([left - right, right - left], 1) * 10


def test_tta_changes_predictions_and_its_effect_is_recorded():
    images = torch.zeros(4, 3, 8, 8)
    images[..., :4] = 1  # left half bright
    loader = [(images, torch.zeros(4))]
    plain = predict_probs(LeftRight(), loader, torch.device("cpu"))
    flipped = predict_probs(LeftRight(), loader, torch.device("cpu"), TtaConfig(hflip=True))
    assert plain[:, 0].min() > 0.99 and np.allclose(flipped, 0.5)  # the flip view disagrees: averaged
    targets = np.zeros(4, int)
    assert oof_metrics(plain, targets)["oof_acc"] == 1.0 and set(oof_metrics(flipped, targets, "_tta")) == {"oof_acc_tta", "oof_f1_tta"}
