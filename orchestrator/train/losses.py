"""Loss functions by name.

Every loss takes logits (B, C) and targets that are either class indices (B,) or
soft distributions (B, C) — MixUp/CutMix produce the latter — so any loss works with
mixing switched on or off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from orchestrator.config import LossConfig, LossSpec


def soft_targets(targets: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) indices or (B, C) distributions -> (B, C) distributions, optionally smoothed."""
    if targets.ndim == 1:
        targets = F.one_hot(targets, num_classes).float()
    return targets * (1 - smoothing) + smoothing / num_classes if smoothing else targets


def class_weights(spec: list[float] | str | None, counts: Sequence[int]) -> torch.Tensor | None:
    """Per-class loss weights: explicit, or "balanced" (n / (C * count_c)) from training-row counts."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
        return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
    if len(spec) != len(counts):
        raise ValueError(f"train.loss.class_weights has {len(spec)} values for {len(counts)} classes")
    return torch.tensor(spec, dtype=torch.float32)


class CrossEntropy(torch.nn.Module):
    def __init__(self, smoothing: float, weight: torch.Tensor | None):
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=self.weight, label_smoothing=self.smoothing)


class FocalLoss(torch.nn.Module):
    """Lin et al. 2017: cross entropy scaled by (1 - p_true)^gamma, so easy examples count less."""

    def __init__(self, gamma: float, smoothing: float, weight: torch.Tensor | None):
        super().__init__()
        self.gamma, self.smoothing = gamma, smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        target = soft_targets(targets, logits.shape[1], self.smoothing)
        log_p = F.log_softmax(logits.float(), dim=1)
        per_class = -target * (1 - log_p.exp()) ** self.gamma * log_p
        if self.weight is not None:
            per_class = per_class * self.weight
        return per_class.sum(1).mean()


class SoftTargetCrossEntropy(torch.nn.Module):
    """timm's soft-target cross entropy; hard labels are one-hot (smoothed) first."""

    def __init__(self, smoothing: float):
        super().__init__()
        from timm.loss import SoftTargetCrossEntropy as TimmSoftTarget

        self.smoothing, self.loss = smoothing, TimmSoftTarget()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, soft_targets(targets, logits.shape[1], self.smoothing))


class F1Loss(torch.nn.Module):
    """1 - soft macro F1: optimises the Mask competition's metric directly (differentiable counts).

    Label smoothing does not apply: smoothed targets would keep even perfect predictions from a loss of 0.
    """

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        target = soft_targets(targets, logits.shape[1])
        probs = logits.float().softmax(1)
        tp = (probs * target).sum(0)
        precision = tp / (probs.sum(0) + self.eps)
        recall = tp / (target.sum(0) + self.eps)
        f1 = 2 * precision * recall / (precision + recall + self.eps)
        return 1 - f1.mean()


def smoothed_tags(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Multi-hot (B, T) targets pulled towards 0.5 by `smoothing` (each tag its own two-class distribution)."""
    targets = targets.float()
    return targets * (1 - smoothing) + 0.5 * smoothing if smoothing else targets


class TagBCE(torch.nn.Module):
    """Binary cross-entropy per tag (a sigmoid each), averaged: the multilabel default."""

    def __init__(self, smoothing: float):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), smoothed_tags(targets, self.smoothing))


class FocalBCE(torch.nn.Module):
    """Binary cross-entropy per tag scaled by (1 - p_t)^gamma (Lin et al. 2017): the many easy negative tags of a
    sparse multilabel task count less."""

    def __init__(self, gamma: float, smoothing: float):
        super().__init__()
        self.gamma, self.smoothing = gamma, smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        target = smoothed_tags(targets, self.smoothing)
        bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        p = logits.float().sigmoid()
        p_t = p * target + (1 - p) * (1 - target)
        return ((1 - p_t) ** self.gamma * bce).mean()


class AsymmetricLoss(torch.nn.Module):
    """ASL (Ridnik et al. 2021): positives and negatives focused apart (gamma_pos, gamma_neg), and easy negatives
    below `clip` dropped by shifting their probability down by it. Summed over tags, averaged over images, as
    the paper's."""

    def __init__(self, gamma_neg: float, gamma_pos: float, clip: float, smoothing: float, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.smoothing, self.eps = gamma_neg, gamma_pos, clip, smoothing, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = smoothed_tags(targets, self.smoothing)
        p = logits.float().sigmoid()
        p_neg = (p - self.clip).clamp(min=0) if self.clip else p  # shifted: a negative below clip costs nothing
        loss_pos = y * (1 - p) ** self.gamma_pos * torch.log(p.clamp(min=self.eps))
        loss_neg = (1 - y) * p_neg ** self.gamma_neg * torch.log((1 - p_neg).clamp(min=self.eps))
        return -(loss_pos + loss_neg).sum(1).mean()


# catalog.LOSSES' names -> factory(cfg, training-row count per class)
LOSSES: dict[str, Callable[[LossSpec, Sequence[int]], torch.nn.Module]] = {
    "cross_entropy": lambda cfg, counts: CrossEntropy(cfg.label_smoothing, class_weights(cfg.class_weights, counts)),
    "focal": lambda cfg, counts: FocalLoss(cfg.gamma, cfg.label_smoothing, class_weights(cfg.class_weights, counts)),
    "soft_target": lambda cfg, counts: SoftTargetCrossEntropy(cfg.label_smoothing),
    "f1": lambda cfg, counts: F1Loss(),
    "bce": lambda cfg, counts: TagBCE(cfg.label_smoothing),
    "asl": lambda cfg, counts: AsymmetricLoss(cfg.gamma_neg, cfg.gamma_pos, cfg.clip, cfg.label_smoothing),
    "focal_bce": lambda cfg, counts: FocalBCE(cfg.gamma, cfg.label_smoothing),
}


def create_loss(cfg: LossConfig, class_counts: Sequence[int], heads: str | None = None) -> torch.nn.Module:
    """The grid's loss; for a multi-head model, a loss per head (`loss.heads`, else this loss) summed with weights."""
    if heads is None:
        return LOSSES[cfg.name](cfg, class_counts)
    from orchestrator.train.heads import HEADS, HeadsLoss

    layout = HEADS[heads]
    unknown = sorted(set(cfg.heads) - set(layout.names))
    if unknown:
        raise ValueError(f"train.loss.heads: no head {', '.join(unknown)} in {heads!r}; its heads: {', '.join(layout.names)}")
    specs = [cfg.heads.get(name, cfg) for name in layout.names]
    losses = [LOSSES[spec.name](spec, counts) for spec, counts in zip(specs, layout.counts(class_counts))]
    return HeadsLoss(layout, losses, [getattr(spec, "weight", 1.0) for spec in specs])
