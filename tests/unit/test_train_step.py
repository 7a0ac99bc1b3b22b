"""Each optional part of a training step has an effect (the test fails if the option were ignored)."""

from __future__ import annotations

import copy

import pytest
import torch

from orchestrator.config import TrainConfig
from orchestrator.train.loop import TrialState
from orchestrator.train.step import build_parts, train_one_epoch

CPU = torch.device("cpu")


class Tiny(torch.nn.Module):
    """Conv backbone + linear head, no BatchNorm or dropout: batch splits give identical gradients."""

    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(4, classes)

    def forward(self, x):
        return self.head(self.body(x))

    def get_classifier(self):
        return self.head


class Recorder(torch.nn.Module):
    """Cross entropy that remembers what it was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, logits, targets):
        self.seen.append((logits.dtype, targets.ndim))
        return torch.nn.functional.cross_entropy(logits.float(), targets)


def data(n=32, classes=4, seed=0, side=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def batches(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def run(cfg: TrainConfig, loader, model=None, epoch=0, lr=0.1, loss=None):
    model = model or Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    parts = build_parts(cfg, model, optimizer, None, loss or Recorder(), CPU, num_classes=4)
    train_one_epoch(model, loader, parts, epoch)
    return model, parts


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accumulating_4_batches_of_8_matches_one_batch_of_32():
    x, y = data()
    one, _ = run(TrainConfig(), batches(x, y, 32))
    accumulated, _ = run(TrainConfig(accumulate_steps=4), batches(x, y, 8))
    unaccumulated, _ = run(TrainConfig(), batches(x, y, 8))
    assert torch.allclose(flat(one), flat(accumulated), atol=1e-6)
    assert not torch.allclose(flat(one), flat(unaccumulated), atol=1e-4)


def test_gradient_clipping_bounds_the_update():
    x, y = data()
    start = flat(Tiny())
    clipped, _ = run(TrainConfig(clip_grad_norm=1e-3), batches(x, y, 32), lr=1.0)
    free, _ = run(TrainConfig(), batches(x, y, 32), lr=1.0)
    assert (flat(clipped) - start).norm() <= 1e-3 + 1e-6
    assert (flat(free) - start).norm() > 1e-2


def test_ema_is_the_exponential_average_of_the_raw_weights():
    x, y = data()
    after_first, _ = run(TrainConfig(), batches(x, y, 16)[:1])
    model, parts = run(TrainConfig(ema={"decay": 0.9, "warmup": False}), batches(x, y, 16))
    # timm's EMA copies the weights on its first update, then blends with the decay
    assert torch.allclose(flat(parts.ema.module), 0.9 * flat(after_first) + 0.1 * flat(model), atol=1e-6)
    assert not torch.allclose(flat(parts.ema.module), flat(model))
    assert parts.evaluate_ema


def test_mixing_makes_soft_targets_until_the_off_epoch():
    x, y = data()
    cfg = TrainConfig(mix={"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "off_epoch": 2})
    _, parts = run(cfg, batches(x, y, 8), epoch=1)
    assert {ndim for _, ndim in parts.loss_fn.seen} == {2}
    _, parts = run(cfg, batches(x, y, 8), epoch=2)
    assert {ndim for _, ndim in parts.loss_fn.seen} == {1}


def test_backbone_frozen_for_the_first_epochs_only():
    x, y = data()
    cfg = TrainConfig(freeze_backbone_epochs=1)
    before = Tiny()
    frozen, _ = run(cfg, batches(x, y, 8), model=copy.deepcopy(before), epoch=0)
    assert torch.equal(flat(frozen.body), flat(before.body)) and not torch.equal(flat(frozen.head), flat(before.head))
    thawed, _ = run(cfg, batches(x, y, 8), model=copy.deepcopy(before), epoch=1)
    assert not torch.equal(flat(thawed.body), flat(before.body))


@pytest.mark.parametrize("amp,dtype", [("off", torch.float32), ("auto", torch.float32), ("bf16", torch.bfloat16)])
def test_amp_runs_the_forward_pass_in_the_asked_dtype(amp, dtype):
    x, y = data()
    _, parts = run(TrainConfig(amp=amp), batches(x, y, 16))
    assert {d for d, _ in parts.loss_fn.seen} == {dtype}  # auto: off on a CPU


def test_channels_last_reaches_the_model():
    x, y = data()
    model, layouts = Tiny(), []
    model.body[0].register_forward_pre_hook(lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    run(TrainConfig(channels_last=True), batches(x, y, 16), model=model)
    assert layouts and all(layouts)


def test_early_stopping_counts_epochs_without_improvement():
    progress = TrialState()
    flags = [progress.update(score, epoch, "max", min_delta=0.01) for epoch, score in enumerate([0.5, 0.6, 0.605, 0.59, 0.7])]
    assert flags == [True, True, False, False, True]
    assert progress.best_epoch == 5 and progress.since_best == 0
    progress.update(0.1, 5, "max")
    assert progress.since_best == 1


def test_progressive_resizing_trains_at_each_stages_size_and_ends_at_full_size():
    cfg = TrainConfig(progressive_resize=[{"epochs": [0, 2], "image_size": 8}, {"epochs": [2, 3], "image_size": 12}])
    model, sizes = Tiny(), []
    model.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = build_parts(cfg, model, optimizer, None, Recorder(), CPU, num_classes=4, image_size=16)
    x, y = data(side=16)
    for epoch in range(4):
        sizes.clear()
        train_one_epoch(model, batches(x, y, 16), parts, epoch)
        assert set(sizes) == {[(8, 8), (8, 8), (12, 12), (16, 16)][epoch]}


def test_progressive_resizing_is_checked_against_the_data_size():
    from orchestrator.config import parse_grid
    from orchestrator.errors import InputError

    grid = {"name": "g", "data": {"image_size": 32}, "models": [{"name": "test_resnet"}],
            "train": {"progressive_resize": [{"epochs": [0, 2], "image_size": 48}]}}
    with pytest.raises(InputError, match=r"progressive_resize\[0\].image_size: 48 is above data.image_size 32"):
        parse_grid(grid)
    grid["train"]["progressive_resize"] = [{"epochs": [0, 3], "image_size": 16}, {"epochs": [2, 4], "image_size": 24}]
    with pytest.raises(InputError, match="stages overlap"):
        parse_grid(grid)
