"""Multi-head models: one backbone, a head per factor of the label, the classes composed from the heads.

The Mask competition's 18 classes are mask (3) x gender (2) x age (3), class =
mask*6 + gender*3 + age: a product of independent factors in row-major order. A
`ComposedHeads` model puts `sum(sizes)` outputs on a timm backbone and returns the
log-probabilities of the composed classes, log p(mask) + log p(gender) + log p(age),
so everything downstream (validation, OOF and test predictions, TTA, the ensemble,
the served model) sees an ordinary 18-class model and mixes it with single-head
ones. Each head's log-probabilities are the composed ones marginalised, which gives
back exactly its own log-softmax: the loss and per-head metrics use those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Heads:
    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def classes(self) -> int:
        return math.prod(self.sizes)

    def split(self, composed: torch.Tensor) -> list[torch.Tensor]:
        """(B, classes) composed log-probabilities -> each head's (B, size) log-probabilities."""
        grid = composed.float().reshape(-1, *self.sizes)
        axes = range(1, len(self.sizes) + 1)
        return [grid.logsumexp(dim=tuple(a for a in axes if a != axis)) for axis in axes]

    def targets(self, targets: torch.Tensor) -> list[torch.Tensor]:
        """Class indices (B,) -> each head's indices; distributions (B, classes) -> each head's marginals."""
        if targets.ndim == 2:
            grid = targets.reshape(-1, *self.sizes)
            axes = range(1, len(self.sizes) + 1)
            return [grid.sum(dim=tuple(a for a in axes if a != axis)) for axis in axes]
        out, rest = [], targets
        for size in reversed(self.sizes):
            out.append(rest % size)
            rest = torch.div(rest, size, rounding_mode="floor")
        return out[::-1]

    def counts(self, class_counts: Sequence[int]) -> list[np.ndarray]:
        """Training rows per class -> per head value (for `class_weights: balanced`)."""
        grid = np.asarray(class_counts).reshape(self.sizes)
        return [grid.sum(axis=tuple(a for a in range(len(self.sizes)) if a != axis)) for axis in range(len(self.sizes))]


# catalog.HEADS' names (models[i].heads) -> the label's factors, in the order the class index composes them
HEADS: dict[str, Heads] = {
    "mask": Heads(("mask", "gender", "age"), (3, 2, 3)),  # class = mask*6 + gender*3 + age
}


class ComposedHeads(torch.nn.Module):
    """A timm model with one output per head value, returning the composed classes' log-probabilities."""

    def __init__(self, model: torch.nn.Module, heads: Heads):
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        parts = self.model(images).float().split(list(self.heads.sizes), dim=1)
        composed = F.log_softmax(parts[0], dim=1)
        for part in parts[1:]:
            composed = (composed[:, :, None] + F.log_softmax(part, dim=1)[:, None, :]).flatten(1)
        return composed

    def __getattr__(self, name: str):
        """timm's attributes (pretrained_cfg, feature_info, get_classifier, ...) are the backbone's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            backbone = self.__dict__.get("_modules", {}).get("model")
            if backbone is None:  # mid-construction or unpickling: nothing to delegate to yet
                raise
            return getattr(backbone, name)


class HeadsLoss(torch.nn.Module):
    """The weighted sum of one loss per head, each on its head's log-probabilities and targets."""

    def __init__(self, heads: Heads, losses: list[torch.nn.Module], weights: list[float]):
        super().__init__()
        self.heads, self.losses, self.weights = heads, torch.nn.ModuleList(losses), weights

    def forward(self, composed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.heads.split(composed), self.heads.targets(targets))
        return sum(w * loss(logp, t) for w, loss, (logp, t) in zip(self.weights, self.losses, pairs))


def head_scores(heads: Heads, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Per head: accuracy and macro F1 of its own argmax (`val_acc_mask`, `val_f1_mask`, ...)."""
    from orchestrator.scoring import fast_macro_f1

    scores = {}
    for name, size, logp, truth in zip(heads.names, heads.sizes, heads.split(logits), heads.targets(targets)):
        predicted, truth = logp.argmax(1).numpy(), truth.numpy()
        scores[f"val_acc_{name}"] = float((predicted == truth).mean())
        scores[f"val_f1_{name}"] = fast_macro_f1(predicted, truth, size)
    return scores
