"""A trial's checkpoints: which epochs write which kind, the background writer's guarantees, what a restart takes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orchestrator.config import CheckpointConfig, TrainConfig, TuneSchedulerConfig
from orchestrator.protocol import EpochReport
from orchestrator.storage import verify
from orchestrator.train import checkpoint
from orchestrator.train.checkpoint import MODEL_FILE, STATE_FILE, keep_only_best, release_ended
from orchestrator.train.checkpointer import FINAL, FULL, WEIGHTS, Checkpointer, CheckpointPolicy
from orchestrator.train.loop import TrialState, keep_checkpoint, restore
from orchestrator.train.session import InTrial
from tests.unit.test_train_step import Tiny, batches, data, flat, run


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((1000,), value)}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_every_epoch_is_resumable_by_default_and_the_last_is_final():
    policy = CheckpointPolicy.of(CheckpointConfig(), TuneSchedulerConfig(), epochs=4, parameters=1_000_000)
    assert [policy.kind(e, improved=e % 2 == 1, done=e == 4) for e in (1, 2, 3, 4)] == [FULL, FULL, FULL, FINAL]
    # asha (grace 1, factor 3: rungs at epochs 1 and 3 of 4, where it may stop the trial): those reports, and the
    # last, wait for every write, so they name the true best epoch
    assert [policy.waits(e, k) for e, k in [(1, FULL), (2, FULL), (3, None), (4, FINAL)]] == [True, False, True, True]


def test_sparse_checkpoints_at_rungs_and_every_n_minutes_and_keeps_each_new_best_s_weights():
    clock = Clock()
    scheduler = TuneSchedulerConfig(kind="fold_asha", grace_period=1, reduction_factor=3)  # rungs 1, 3 of 12
    policy = CheckpointPolicy.of(CheckpointConfig(every="sparse", minutes=10), scheduler, epochs=12, parameters=1)
    policy.clock, policy.last_full = clock, 0.0
    kinds = []
    for epoch, improved in [(1, True), (2, True), (3, False), (4, False), (5, True), (6, False), (7, False)]:
        clock.now += 240  # 4-minute epochs
        kinds.append(policy.kind(epoch, improved, done=False))
    # rung 1, a new best, rung 3, nothing, a best, 10 minutes after rung 3, nothing
    assert kinds == [FULL, WEIGHTS, FULL, None, WEIGHTS, FULL, None]
    assert policy.waits(3, FULL) and not policy.waits(6, FULL) and not policy.waits(2, WEIGHTS)


def test_a_due_sparse_resume_point_waits_while_a_write_is_in_flight_unless_the_epoch_must_be_kept():
    clock = Clock()
    policy = CheckpointPolicy.of(CheckpointConfig(every="sparse", minutes=1), TuneSchedulerConfig(kind="fold_asha"), 10, 1)
    policy.clock, policy.last_full = clock, 0.0
    clock.now = 120
    assert policy.kind(2, improved=False, done=False, busy=True) is None  # due, but the next epoch tries again
    assert policy.kind(4, improved=True, done=False, busy=True) == FULL  # a new best is kept whole when due
    clock.now = 240
    assert policy.kind(5, improved=False, done=False, busy=False) == FULL
    assert policy.kind(9, improved=False, done=False, busy=True) == FULL  # a rung (1, 3, 9 of 10)
    assert policy.kind(10, improved=False, done=True, busy=True) == FINAL
    every = CheckpointPolicy.of(CheckpointConfig(every="epoch"), TuneSchedulerConfig(), 10, 1)
    assert every.kind(2, improved=False, done=False, busy=True) == FULL  # waits: at most one epoch lost


def test_auto_is_sparse_for_large_models_only():
    cfg, scheduler = CheckpointConfig(), TuneSchedulerConfig()
    assert not CheckpointPolicy.of(cfg, scheduler, 10, parameters=11_000_000).sparse  # resnet18
    assert CheckpointPolicy.of(cfg, scheduler, 10, parameters=88_000_000).sparse  # convnext_base


def test_the_background_writer_names_a_best_epoch_only_once_its_checkpoint_is_committed(tmp_path, monkeypatch):
    """The report's best epoch is the last committed one; a write's error surfaces in the training thread."""
    import threading

    gate = threading.Event()
    keeper = Checkpointer(str(tmp_path / "trial"))
    real_write = keeper._write
    monkeypatch.setattr(keeper, "_write", lambda *a: (gate.wait(10), real_write(*a)))
    tensors = weights(1.0)
    held = keeper.save(FULL, 1, tensors, {"next_epoch": 1}, best=(1, 0.5))
    tensors["w"].fill_(2.0)  # the next epoch trains on at once: the checkpoint keeps what was saved
    report = keeper.report(EpochReport(epoch=1, best_epoch=1, best_score=0.5), held)
    assert (report.best_epoch, report.best_score) == (0, None) and report.checkpoint_s == held < 5
    assert checkpoint.committed_epochs(str(tmp_path / "trial")) == []  # in flight: not there for a restart
    gate.set()
    keeper.settle(block=True)
    assert keeper.report(EpochReport(epoch=2, best_epoch=1), 0.0).best_epoch == 1
    saved = torch.load(tmp_path / "trial" / "epoch_0001" / MODEL_FILE, weights_only=True)
    assert torch.equal(saved["w"], torch.full((1000,), 1.0))

    monkeypatch.setattr(keeper, "_write", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    keeper.save(FULL, 2, tensors, {"next_epoch": 2}, best=(1, 0.5))
    with pytest.raises(OSError, match="No space left"):
        keeper.save(FULL, 3, tensors, {"next_epoch": 3}, best=(1, 0.5))


def test_snapshot_buffers_are_allocated_once(tmp_path):
    keeper = Checkpointer(str(tmp_path / "trial"))
    for epoch in (1, 2, 3):
        keeper.save(FULL, epoch, weights(float(epoch)), {"adam": {"m": torch.ones(10)}}, best=(epoch, 0.0))
        keeper.settle(block=True)
        if epoch == 1:
            pointers = {k: t.data_ptr() for k, t in keeper._buffers.items()}
    assert {k: t.data_ptr() for k, t in keeper._buffers.items()} == pointers and len(pointers) == 2
    keeper.close()


def test_the_best_and_the_latest_two_resumable_checkpoints_are_kept_and_weights_alone_never_resume(tmp_path):
    folder = tmp_path / "trial"
    keeper = Checkpointer(str(folder), background=False)
    for epoch, kind, best in [(1, FULL, 1), (2, FULL, 2), (3, FULL, 2), (4, WEIGHTS, 4), (5, FULL, 4), (6, WEIGHTS, 6)]:
        keeper.save(kind, epoch, weights(epoch), None if kind == WEIGHTS else {"next_epoch": epoch}, best=(best, 0.0))
    # the latest two resumable, the best, and the best before it (the last one a report named)
    assert names(folder) == ["epoch_0003", "epoch_0004", "epoch_0005", "epoch_0006"]
    keeper.save(FULL, 7, weights(7), {"next_epoch": 7}, best=(6, 0.0))
    assert names(folder) == ["epoch_0005", "epoch_0006", "epoch_0007"]
    assert names(folder / "epoch_0006") == ["MANIFEST.json", MODEL_FILE]
    (folder / "epoch_0009").mkdir()  # a commit cut short (no manifest) is never restored
    (folder / "epoch_0009" / STATE_FILE).write_text("9")
    notes: list[str] = []
    with checkpoint.restored(str(folder), notes) as restored:
        assert torch.load(restored / STATE_FILE, weights_only=True) == {"next_epoch": 7}
    assert notes == []
    with checkpoint.restored(str(tmp_path / "none"), notes) as nothing:
        assert nothing is None


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before_and_none_good_starts_afresh(tmp_path):
    folder = tmp_path / "trial"
    keeper = Checkpointer(str(folder), background=False)
    for epoch in (1, 2, 3):
        keeper.save(FULL, epoch, weights(epoch), {"next_epoch": epoch}, best=(1, 0.0))
    size = (folder / "epoch_0003" / MODEL_FILE).stat().st_size
    (folder / "epoch_0003" / MODEL_FILE).write_bytes(b"w3")  # truncated, as by a node lost mid-write
    notes: list[str] = []
    with checkpoint.restored(str(folder), notes) as restored:
        assert torch.load(restored / STATE_FILE, weights_only=True) == {"next_epoch": 2}
    assert notes == [f"checkpoint epoch_0003 is damaged ({MODEL_FILE} has 2 bytes, its manifest says {size}), skipped",
                     "continues from checkpoint epoch_0002"]
    (folder / "epoch_0002" / MODEL_FILE).write_bytes(b"x" * size)  # same size, other bytes
    (folder / "epoch_0001" / STATE_FILE).unlink()
    again: list[str] = []
    with checkpoint.restored(str(folder), again) as restored:
        assert restored is None
    assert again[1] == f"checkpoint epoch_0002 is damaged ({MODEL_FILE} does not match its checksum), skipped"
    assert again[-1].startswith("no good checkpoint is left: starts afresh from epoch 1")


@pytest.mark.parametrize("evaluate_ema", [True, False])
def test_checkpoint_round_trip_with_ema_stores_each_weight_set_once(tmp_path, evaluate_ema):
    """keep_checkpoint() -> restore() brings back raw and EMA weights; model.pt is the evaluated set, stored once."""
    session = InTrial(str(tmp_path / "trial"), send=lambda result: None)
    x, y = data()
    cfg = TrainConfig(ema={"decay": 0.9, "warmup": False, "evaluate": evaluate_ema})
    model, parts = run(cfg, batches(x, y, 8))
    keeper = Checkpointer(session.trial_dir)
    keep_checkpoint(keeper, FULL, False, EpochReport(epoch=1, best_epoch=1), model, parts, TrialState(next_epoch=1))
    keeper.close()
    state = torch.load(tmp_path / "trial" / "epoch_0001" / STATE_FILE, weights_only=True)
    assert set(state) >= {"other_weights"} and not {"raw_model", "ema"} & set(state)

    fresh = Tiny()
    _, fresh_parts = run(cfg, [], model=fresh)  # no batches: untrained weights, same parts
    progress = restore(session, fresh, fresh_parts)
    assert progress.next_epoch == 1
    assert torch.equal(flat(fresh), flat(model)) and torch.equal(flat(fresh_parts.ema.module), flat(parts.ema.module))


def test_an_ended_trial_keeps_at_most_its_best_weights_without_optimizer_state(tmp_path):
    folder = tmp_path / "trial"
    keeper = Checkpointer(str(folder), background=False)
    for epoch in (1, 2, 3):
        keeper.save(FULL, epoch, weights(epoch), {"next_epoch": epoch, "optimizer": weights(0)}, best=(2, 0.0))
    freed = keep_only_best(str(folder), 2)
    assert names(folder) == ["epoch_0002"]
    assert names(folder / "epoch_0002") == ["MANIFEST.json", MODEL_FILE]
    assert verify(folder / "epoch_0002") is None and freed > 2 * 8000
    assert release_ended(str(folder), 2, keep_weights=True) == 0  # (already so)
    assert release_ended(str(folder), 2, keep_weights=False) > 4000 and not folder.exists()  # MLflow holds the weights
