"""Losses, optimizers and LR schedules: each registry entry does what its name says."""

from __future__ import annotations

import itertools

import pytest
import torch

from orchestrator.catalog import TAG_LOSSES
from orchestrator.config import LossConfig, LRSchedulerConfig, OptimizerConfig
from orchestrator.train.losses import LOSSES, create_loss
from orchestrator.train.optim import LR_SCHEDULERS, OPTIMIZERS, create_lr_scheduler, create_optimizer

COUNTS = [10, 10, 10, 10]


def logits_targets(seed=0, n=64, classes=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g) * 2, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("name", sorted(set(LOSSES) - set(TAG_LOSSES)))
def test_every_loss_takes_hard_and_soft_targets(name):
    logits, targets = logits_targets()
    loss = create_loss(LossConfig(name=name), COUNTS)
    soft = torch.nn.functional.one_hot(targets, 4).float()
    assert torch.allclose(loss(logits, targets), loss(logits, soft), atol=1e-5)
    logits.requires_grad_(True)
    loss(logits, targets).backward()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TAG_LOSSES)
def test_every_tag_loss_takes_multi_hot_and_mixed_targets(name):
    from timm.data import Mixup

    torch.manual_seed(0)
    logits, hot = torch.randn(8, 5), (torch.rand(8, 5) < 0.4).float()
    loss = create_loss(LossConfig(name=name, label_smoothing=0.0), [1] * 5)
    _, mixed = Mixup(mixup_alpha=0.4, label_smoothing=0.0, num_classes=5, multi_label=True)(torch.zeros(8, 1, 4, 4), hot)
    assert ((mixed > 0) & (mixed < 1)).any()  # mixed multi-hot targets are soft
    logits.requires_grad_(True)
    for targets in (hot, mixed):
        loss(logits, targets).backward()
    assert logits.grad.abs().sum() > 0
    perfect = 20 * (2 * hot - 1)  # confident and right: next to nothing
    assert loss(perfect, hot) < 1e-3 < loss(-perfect, hot)


def test_tag_losses_match_their_definitions():
    torch.manual_seed(1)
    logits, hot = torch.randn(16, 6), (torch.rand(16, 6) < 0.3).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, hot)
    assert torch.allclose(create_loss(LossConfig(name="bce", label_smoothing=0.0), [1] * 6)(logits, hot), bce)
    smoothed = torch.nn.functional.binary_cross_entropy_with_logits(logits, hot * 0.9 + 0.05)
    assert torch.allclose(create_loss(LossConfig(name="bce", label_smoothing=0.1), [1] * 6)(logits, hot), smoothed)
    focal = create_loss(LossConfig(name="focal_bce", gamma=0.0, label_smoothing=0.0), [1] * 6)
    assert torch.allclose(focal(logits, hot), bce, atol=1e-6)  # gamma 0: plain BCE
    asl = create_loss(LossConfig(name="asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0, label_smoothing=0.0), [1] * 6)
    assert torch.allclose(asl(logits, hot), bce * 6, atol=1e-4)  # no focusing, no clip: BCE summed over tags
    shifted = create_loss(LossConfig(name="asl", label_smoothing=0.0), [1] * 6)  # the paper's: easy negatives count less
    assert shifted(logits, hot) < asl(logits, hot)


def test_focal_is_cross_entropy_at_gamma_zero_and_downweights_easy_examples():
    logits, targets = logits_targets()
    ce = create_loss(LossConfig(name="cross_entropy"), COUNTS)(logits, targets)
    assert torch.allclose(create_loss(LossConfig(name="focal", gamma=0), COUNTS)(logits, targets), ce, atol=1e-5)
    assert create_loss(LossConfig(name="focal", gamma=2), COUNTS)(logits, targets) < ce


def test_class_weights_change_the_loss():
    logits, targets = logits_targets()
    plain = create_loss(LossConfig(), COUNTS)(logits, targets)
    weighted = create_loss(LossConfig(class_weights=[5, 1, 1, 1]), COUNTS)(logits, targets)
    balanced = create_loss(LossConfig(class_weights="balanced"), [40, 10, 10, 4])
    assert not torch.allclose(plain, weighted)
    assert balanced.weight.argmax() == 3 and balanced.weight.argmin() == 0


def test_label_smoothing_changes_soft_target_loss():
    logits, targets = logits_targets()
    assert not torch.allclose(create_loss(LossConfig(name="soft_target"), COUNTS)(logits, targets),
                              create_loss(LossConfig(name="soft_target", label_smoothing=0.2), COUNTS)(logits, targets))


def test_f1_loss_is_near_zero_for_perfect_predictions():
    targets = torch.arange(4).repeat(8)
    perfect = torch.nn.functional.one_hot(targets, 4).float() * 50
    loss = create_loss(LossConfig(name="f1"), COUNTS)
    assert loss(perfect, targets) < 1e-3 and loss(torch.zeros(32, 4), targets) > 0.5


EXPECTED_OPTIMIZER = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "radam": "RAdam", "lamb": "Lamb"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_is_the_named_one_and_steps(name):
    model = torch.nn.Linear(3, 2)
    optimizer = create_optimizer(model, OptimizerConfig(name=name, lr=0.1))
    assert type(optimizer).__name__ == EXPECTED_OPTIMIZER[name]
    if name == "sgd":
        assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.9
    before = model.weight.detach().clone()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)


def lrs(name: str, epochs=6, steps=5, metric=lambda e: 0.5, **kw):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = create_lr_scheduler(optimizer, LRSchedulerConfig(name=name, **kw), epochs, steps, "max")
    out, updates = [], 0
    for epoch in range(epochs):
        for _ in range(steps):
            updates += 1
            scheduler.step_update(num_updates=updates)
        scheduler.step(epoch + 1, metric(epoch))
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_schedules_have_their_shapes():
    assert sorted(LR_SCHEDULERS) == ["constant", "cosine", "one_cycle", "plateau", "step"]
    cosine = lrs("cosine", warmup_epochs=0, min_lr=0.0)
    assert all(a > b for a, b in itertools.pairwise(cosine))
    assert lrs("step", decay_epochs=2, decay_rate=0.5, warmup_epochs=0) == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25, 0.125])
    plateau = lrs("plateau", patience_epochs=1, decay_rate=0.1, warmup_epochs=0)  # metric never improves
    assert plateau == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    cycle = lrs("one_cycle", warmup_epochs=2)
    peak = cycle.index(max(cycle))
    assert 0 < peak < len(cycle) - 1 and cycle[-1] < cycle[0]


def test_cosine_with_warm_restarts_climbs_back_to_a_decayed_peak():
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    cfg = LRSchedulerConfig(name="cosine", warmup_epochs=0, min_lr=0.0, restarts=2, cycle_decay=0.5)
    scheduler = create_lr_scheduler(optimizer, cfg, epochs=6, steps_per_epoch=5)  # 3 cycles of 2 epochs
    lr = []
    for update in range(1, 31):
        scheduler.step_update(num_updates=update)
        lr.append(optimizer.param_groups[0]["lr"])
    rises = [i for i, (a, b) in enumerate(itertools.pairwise(lr)) if b > a]
    assert len(rises) == 2  # two restarts
    peaks = [lr[i + 1] for i in rises]
    assert peaks[0] == pytest.approx(0.5, rel=0.2) and peaks[1] == pytest.approx(0.25, rel=0.2)  # each peak halves
    with pytest.raises(ValueError, match="restarts: warm restarts are cycles of the cosine"):
        LRSchedulerConfig(name="step", restarts=1)


def test_a_grid_that_sets_no_lr_gets_its_optimizers_own_and_a_trial_records_it():
    from orchestrator.config import TrialTables, parse_grid
    from orchestrator.search.plan import plan_trials

    grid = parse_grid({"name": "g", "data": {}, "models": [{"name": "test_resnet"}],
                       "search": {"train.optimizer.name": {"grid": ["adamw", "sgd"]}}})
    assert grid.train.optimizer.lr is None  # the grid says "the optimizer's default"...
    tables = TrialTables(folds_path="f", test_path=None, num_classes=3)
    trials = {p.config.train.optimizer.name: p.config.train.optimizer for p in plan_trials(grid, tables)}
    assert (trials["adamw"].lr, trials["adamw"].weight_decay) == (2e-3, 0.05)  # ...each trial holds the number
    assert (trials["sgd"].lr, trials["sgd"].weight_decay) == (0.1, 5e-4)
    assert OptimizerConfig(name="sgd", lr=0.02).resolved().lr == 0.02  # a value the grid gives is kept
    optimizer = create_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(name="sgd"))
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_a_resumed_warm_restart_schedule_continues_where_it_stopped():
    cfg = LRSchedulerConfig(name="cosine", warmup_epochs=1, restarts=2, cycle_mul=1.5, cycle_decay=0.7)

    def run(updates: range, state=None):
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        scheduler = create_lr_scheduler(optimizer, cfg, epochs=8, steps_per_epoch=5)
        if state is not None:  # what restore() does with a checkpoint's train_state
            optimizer.load_state_dict(state[0])
            scheduler.load_state_dict(state[1])
        lrs = []
        for update in updates:
            scheduler.step_update(num_updates=update)
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs, (optimizer.state_dict(), scheduler.state_dict())

    whole, _ = run(range(1, 41))
    first, state = run(range(1, 18))  # stopped in epoch 4, mid second cycle
    second, _ = run(range(18, 41), state)
    assert first + second == pytest.approx(whole)


def test_the_default_warmup_never_takes_a_trials_last_epoch():
    def per_update(epochs: int, **kw) -> list[float]:
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        scheduler = create_lr_scheduler(optimizer, LRSchedulerConfig(min_lr=0.0, **kw), epochs, steps_per_epoch=5)
        out = []
        for update in range(epochs * 5):
            scheduler.step_update(num_updates=update)
            out.append(optimizer.param_groups[0]["lr"])
        return out

    assert LRSchedulerConfig().warmup_epochs == 1
    assert per_update(1) == per_update(1, warmup_epochs=0)  # one epoch: no warmup, it starts at the peak
    two = per_update(2)
    assert two[0] < 0.01 and two[2] == pytest.approx(0.4, abs=0.01) and max(two) < 1.0  # epoch 1 warms up
