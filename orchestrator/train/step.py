"""One training epoch and the optional parts of an optimisation step.

The loop stays one loop: gradient accumulation, AMP, gradient clipping, EMA of the
weights, MixUp/CutMix, backbone freezing and progressive resizing are fields of
`StepParts`, each off unless the grid turns it on. timm provides EMA (ModelEmaV3) and Mixup.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from orchestrator.config import TrainConfig
from orchestrator.train.checkpoint import unwrap
from orchestrator.train.predict import Normalizer


@dataclass
class StepParts:
    optimizer: torch.optim.Optimizer
    scheduler: Any  # timm-style: step_update(num_updates), step(epoch, metric); or None
    loss_fn: torch.nn.Module
    device: torch.device
    accumulate: int = 1
    clip: float | None = None
    amp_dtype: torch.dtype | None = None
    scaler: Any = None  # torch.amp.GradScaler for fp16
    ema: Any = None  # timm ModelEmaV3
    mixup: Any = None  # timm Mixup
    mix_off_epoch: int | None = None
    channels_last: bool = False
    freeze_epochs: int = 0
    backbone: list[torch.nn.Parameter] = field(default_factory=list)  # parameters outside the classifier head
    evaluate_ema: bool = False  # validate / checkpoint / predict with the EMA weights
    normalize: Normalizer = None  # uint8 batch -> model input, on the device (None: the batch as is)
    side_at: Callable[[int], int] | None = None  # progressive resizing: the side the model trains at in an epoch

    def state_dict(self, model: torch.nn.Module) -> dict[str, Any]:
        """What a resume needs of the stateful parts (the checkpoint's train_state, beside model.pt's weights)."""
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict() if self.scheduler else {}}
        if self.ema is not None:  # model.pt holds the evaluated weights; the state carries the other set
            state["other_weights"] = weight_sets(model, self)[1].state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, model: torch.nn.Module, state: dict[str, Any]) -> None:
        """Undo `state_dict` (model.pt's weights are loaded by the caller)."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            weight_sets(model, self)[1].load_state_dict(state["other_weights"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def weight_sets(model: torch.nn.Module, parts: StepParts):
    """(the weights that are validated, checkpointed as model.pt and predict; the other set when EMA is on, else None)."""
    if parts.ema is None:
        return unwrap(model), None
    return (parts.ema.module, unwrap(model)) if parts.evaluate_ema else (unwrap(model), parts.ema.module)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """auto: bf16 on a GPU that supports it, off elsewhere (CPU autocast is slower than fp32 here)."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def backbone_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    head = {id(p) for p in unwrap(model).get_classifier().parameters()}
    return [p for p in unwrap(model).parameters() if id(p) not in head]


def build_parts(cfg: TrainConfig, model: torch.nn.Module, optimizer, scheduler, loss_fn, device, num_classes: int,
                normalize: Normalizer = None, image_size: int | None = None, multi_label: bool = False) -> StepParts:
    """The step parts the grid asked for; `model` is already on its device (`multi_label`: multi-hot targets)."""
    dtype = amp_dtype(cfg.amp, device)
    parts = StepParts(optimizer, scheduler, loss_fn, device, accumulate=cfg.accumulate_steps, clip=cfg.clip_grad_norm,
                      amp_dtype=dtype, channels_last=cfg.channels_last, freeze_epochs=cfg.freeze_backbone_epochs,
                      evaluate_ema=cfg.ema is not None and cfg.ema.evaluate, normalize=normalize)
    if dtype == torch.float16:
        parts.scaler = torch.amp.GradScaler(device.type)
    if cfg.ema is not None:
        from timm.utils import ModelEmaV3

        parts.ema = ModelEmaV3(unwrap(model), decay=cfg.ema.decay, use_warmup=cfg.ema.warmup)
    if cfg.mix is not None:
        from timm.data import Mixup

        mix = cfg.mix
        parts.mixup = Mixup(mixup_alpha=mix.mixup_alpha, cutmix_alpha=mix.cutmix_alpha, prob=mix.prob,
                            switch_prob=mix.switch_prob, label_smoothing=0.0, num_classes=num_classes,
                            multi_label=multi_label)  # multi-hot targets mixed as they are
        parts.mix_off_epoch = mix.off_epoch
    if cfg.freeze_backbone_epochs:
        parts.backbone = backbone_parameters(model)
    if cfg.progressive_resize and image_size is not None:
        parts.side_at = lambda epoch: cfg.image_size_at(epoch, image_size)
    return parts


def resized(images: torch.Tensor, side: int) -> torch.Tensor:
    """A float batch at `side` x `side` (antialiased bilinear: a smaller side keeps thin strokes as grey, not gaps)."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def updates_per_epoch(batches: int, accumulate: int) -> int:
    return max(1, math.ceil(batches / accumulate))


def optimizer_step(model: torch.nn.Module, parts: StepParts, epoch: int) -> None:
    if epoch < parts.freeze_epochs:
        for param in parts.backbone:  # no gradient -> the optimizer leaves it (and its weight decay) alone
            param.grad = None
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)
    if parts.clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), parts.clip)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)


def train_one_epoch(model: torch.nn.Module, loader, parts: StepParts, epoch: int) -> tuple[float, int, float]:
    """Mean training loss over this worker's batches, the number of images it saw, and the seconds it waited for
    batches (the loader's share: the rest is the step, which `loss.item()` waits for on a GPU too)."""
    model.train()
    if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)  # reshuffle DDP shards every epoch
    if parts.mixup is not None:
        parts.mixup.mixup_enabled = parts.mix_off_epoch is None or epoch < parts.mix_off_epoch
    total, seen, batches, waited = 0.0, 0, len(loader), 0.0
    updates = epoch * updates_per_epoch(batches, parts.accumulate)
    asked = time.perf_counter()
    stream = iter(loader)  # (its worker processes start here: waited for too)
    for index, (images, targets) in enumerate(stream):
        waited += time.perf_counter() - asked
        images, targets = images.to(parts.device, non_blocking=True), targets.to(parts.device, non_blocking=True)
        if parts.normalize is not None:
            images = parts.normalize(images)
        if parts.side_at is not None:
            images = resized(images.float(), parts.side_at(epoch))
        if parts.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if parts.mixup is not None and parts.mixup.mixup_enabled and len(images) % 2 == 0:
            images, targets = parts.mixup(images, targets)
        stepping = (index + 1) % parts.accumulate == 0 or index + 1 == batches
        sync = contextlib.nullcontext() if stepping or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with torch.autocast(parts.device.type, dtype=parts.amp_dtype, enabled=parts.amp_dtype is not None):
                loss = parts.loss_fn(model(images), targets)
            scaled = loss / parts.accumulate
            (parts.scaler.scale(scaled) if parts.scaler is not None else scaled).backward()
        if stepping:
            optimizer_step(model, parts, epoch)
            updates += 1
            if parts.scheduler is not None:
                parts.scheduler.step_update(num_updates=updates)
            if parts.ema is not None:
                parts.ema.update(unwrap(model), step=updates)
        total += loss.item() * len(images)
        seen += len(images)
        asked = time.perf_counter()
    return total / max(seen, 1), seen, waited
