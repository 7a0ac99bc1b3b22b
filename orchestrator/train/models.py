"""timm models by name: the model axis of the grid."""

from __future__ import annotations

import difflib
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def check_model_name(name: str) -> str:
    """Return `name` if timm knows it; otherwise raise ValueError listing close matches."""
    import timm

    if timm.is_model(name) or name in _timm_names():
        return name
    close = difflib.get_close_matches(name, sorted(_timm_names()), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models() for all names"
    raise ValueError(f"unknown timm model {name!r}{hint}")


def create_model(name: str, num_classes: int, pretrained: bool = False, drop_rate: float = 0.0,
                 checkpoint: str | None = None, heads: str | None = None) -> torch.nn.Module:
    """A timm classifier with a fresh head of `num_classes` outputs (or, with `heads`, a `ComposedHeads` model).

    `pretrained=True` starts from `checkpoint` (a local weights file, loaded weights-only
    through timm's pretrained-file override) when one is given, else from the timm /
    Hugging Face hub, downloaded on first use.
    """
    import timm

    from orchestrator.train.heads import HEADS, ComposedHeads

    layout = HEADS[heads] if heads else None
    if layout is not None and layout.classes != num_classes:
        raise ValueError(f"heads {heads!r} compose {layout.classes} classes ({' x '.join(map(str, layout.sizes))}), "
                         f"but the data has {num_classes}")
    outputs = sum(layout.sizes) if layout else num_classes
    overlay = {"pretrained_cfg_overlay": {"file": checkpoint}} if pretrained and checkpoint else {}
    model = timm.create_model(name, pretrained=pretrained, num_classes=outputs, drop_rate=drop_rate, **overlay)
    return ComposedHeads(model, layout) if layout else model


def normalization(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the model's weights expect; ImageNet's when the model does not say."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
