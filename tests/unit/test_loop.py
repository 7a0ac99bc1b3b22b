"""The one training loop, run in this process (no Ray): train, checkpoint, interrupt, resume, in seconds."""

from __future__ import annotations

import pytest

from orchestrator.config import parse_grid
from orchestrator.data.prepare import prepare_data
from orchestrator.protocol import EpochReport
from orchestrator.search.plan import plan_trials
from orchestrator.train.checkpoint import committed_epochs, resumable
from orchestrator.train.loop import run_loop
from orchestrator.train.session import InTrial


class Interrupted(Exception):
    """Stands for a kill after an epoch's report (its checkpoint committed before the report is sent)."""


def a_trial(minimal_grid, storage, epochs=3, **train):
    minimal_grid["train"].update(epochs=epochs, augment="none", **train)
    minimal_grid["data"].update(loader_workers=0, cache="off")
    minimal_grid["tracking"] = {"storage": str(storage)}
    grid = parse_grid(minimal_grid)
    return plan_trials(grid, prepare_data(grid).trial_tables)[0].config


def run(trial, stop_after: int | None = None) -> list[EpochReport]:
    reports: list[EpochReport] = []

    def send(result):
        reports.append(EpochReport.from_result(result))
        if stop_after is not None and reports[-1].epoch == stop_after and not reports[-1].replay:
            raise Interrupted

    run_loop(trial, InTrial(trial.layout.trial_dir(trial.trial_key), send=send))
    return reports


@pytest.mark.parametrize("train", [{}, {"ema": {"decay": 0.9}, "scheduler": {"name": "one_cycle"}}],
                         ids=["plain", "ema+one_cycle"])
def test_an_interrupted_trial_resumes_to_the_scores_of_an_uninterrupted_one(minimal_grid, tmp_path, train):
    """Every stateful step part (optimizer, lr schedule, EMA's other weights) comes back from the checkpoint."""
    straight = run(a_trial(minimal_grid, tmp_path / "a", **train))
    assert [r.epoch for r in straight] == [1, 2, 3] and straight[-1].trial_done

    trial = a_trial(minimal_grid, tmp_path / "b", **train)
    with pytest.raises(Interrupted):
        run(trial, stop_after=2)
    # the epoch's write was in flight when the report went out; the loop's exit waited for it
    assert committed_epochs(trial.layout.trial_dir(trial.trial_key))[0] == 2
    resumed = run(trial)
    assert [(r.epoch, r.replay) for r in resumed] == [(2, True), (3, False)]  # epoch 2 replayed for the driver
    for key in ("train_loss", "val_loss", "val_acc"):
        assert getattr(resumed[-1], key) == pytest.approx(getattr(straight[-1], key), rel=1e-5), key
    assert resumed[-1].best_epoch == straight[-1].best_epoch


def test_sparse_checkpoints_resume_from_the_last_resumable_one_and_keep_each_best_s_weights(minimal_grid, tmp_path):
    """Between resume points only a new best's weights are written: a kill goes back to the last resume point
    (here none: a fresh start) and the trial still ends as an uninterrupted one would."""
    sparse = {"checkpoint": {"every": "sparse", "minutes": 60}}
    straight = run(a_trial(minimal_grid, tmp_path / "a", epochs=4, **sparse))
    trial = a_trial(minimal_grid, tmp_path / "b", epochs=4, **sparse)
    folder = trial.layout.trial_dir(trial.trial_key)
    with pytest.raises(Interrupted):
        run(trial, stop_after=3)
    kept = committed_epochs(folder)  # the best of epochs 1-3 (and the one before it): their weights alone
    assert straight[kept[0] - 1].val_acc == max(r.val_acc for r in straight[:3])
    assert kept and not any(resumable(folder, epoch) for epoch in kept)
    resumed = run(trial)
    assert [(r.epoch, r.replay) for r in resumed] == [(1, False), (2, False), (3, False), (4, False)]
    assert resumed[-1].val_acc == pytest.approx(straight[-1].val_acc, rel=1e-5)
    assert resumable(folder, 4) and resumed[-1].best_epoch == straight[-1].best_epoch


def test_a_refit_trains_on_every_row_keeps_its_last_epoch_and_predicts_only_the_test_rows(minimal_grid, tmp_path):
    """fold REFIT: no validation rows (no scores, no early stopping), the last epoch is the best, no OOF; a kill
    resumes it like any trial."""
    from orchestrator.config import REFIT
    from orchestrator.train.predict import load_frames
    from orchestrator.train.setup import build_trial

    fold = a_trial(minimal_grid, tmp_path, epochs=3, early_stopping={"patience": 1})
    trial = fold.model_copy(update={"fold": REFIT})
    setup = build_trial(trial)
    assert trial.trial_key.endswith("-refit") and setup.val_rows.empty
    assert len(setup.train_rows) == len(build_trial(fold).train_rows) + len(build_trial(fold).val_rows)
    with pytest.raises(Interrupted):
        run(trial, stop_after=2)
    reports = run(trial)
    assert [(r.epoch, r.replay) for r in reports] == [(2, True), (3, False)]
    last = reports[-1]
    assert last.trial_done and last.best_epoch == 3 and last.best_score is None and last.predicted
    assert "val_acc" not in last.metrics() and "train_loss" in last.metrics()
    frames = load_frames(trial.layout.predictions(trial.trial_key))
    assert "oof" not in frames and ("test" in frames) == (trial.tables.test_path is not None)


def test_a_nan_loss_fails_as_itself_when_a_checkpoint_write_in_flight_fails_too(minimal_grid, tmp_path, monkeypatch,
                                                                                   capfd):
    """The loop's `finally` closes the checkpointer without replacing the loop's own error (a NaN loss must fail
    at once, not look like a storage fault that Tune retries)."""
    import math
    import time

    from orchestrator.train import checkpointer as checkpointer_module
    from orchestrator.train import loop as loop_module
    from orchestrator.train.loop import NonFiniteLossError

    real_save, real_epoch, writes = checkpointer_module.save_files, loop_module.train_one_epoch, []

    def save_files(*args, **kwargs):
        writes.append(1)
        if len(writes) > 1:  # epoch 2's write, in the background, fails: still in flight when epoch 3's loss is NaN
            time.sleep(1)
            raise OSError("the storage went away")
        return real_save(*args, **kwargs)

    def train_one_epoch(model, loader, parts, epoch):
        loss, seen, waited = real_epoch(model, loader, parts, epoch)
        return (math.nan if epoch == 2 else loss), seen, waited

    monkeypatch.setattr(checkpointer_module, "save_files", save_files)
    monkeypatch.setattr(loop_module, "train_one_epoch", train_one_epoch)
    with pytest.raises(NonFiniteLossError, match="train_loss is nan in epoch 3"):
        run(a_trial(minimal_grid, tmp_path, epochs=4))
    assert "checkpoint: the write in flight failed too (OSError: the storage went away)" in capfd.readouterr().err


def test_a_write_that_outlasts_its_timeout_is_a_clear_error_and_close_frees_the_buffers(tmp_path, monkeypatch):
    import threading

    import torch

    from orchestrator.train import checkpointer as checkpointer_module
    from orchestrator.train.checkpointer import FULL, Checkpointer, CheckpointTimeout

    release = threading.Event()
    monkeypatch.setattr(checkpointer_module, "save_files", lambda *a, **k: release.wait(10))
    keeper = Checkpointer(str(tmp_path / "trial"), background=True, timeout_s=0.3)
    keeper.save(FULL, 1, {"w": torch.ones(3)}, {"next_epoch": 1}, (1, 0.5))
    assert keeper._buffers  # the state's copy, kept for the next checkpoint
    with pytest.raises(CheckpointTimeout, match=r"did not finish in 0 s: the storage is unreachable or too slow"):
        keeper.settle(block=True)
    release.set()
    keeper.close()
    assert not keeper._buffers


def test_a_scheduler_may_stop_a_trial_only_at_a_report_that_names_a_committed_best():
    from orchestrator.config import TuneSchedulerConfig
    from orchestrator.protocol import check_stop
    from orchestrator.train.checkpointer import CheckpointPolicy

    cfg = TuneSchedulerConfig(kind="asha", grace_period=1, reduction_factor=2)
    policy = CheckpointPolicy(sparse=True, minutes=60, rungs=frozenset(cfg.rung_epochs(10)))
    assert all(policy.waits(epoch, kind) for epoch in cfg.rung_epochs(10) for kind in (None, "weights", "full"))
    check_stop(EpochReport(epoch=2, settled=True), "c-f0")
    check_stop(EpochReport(epoch=3, settled=False, best_epoch=2), "c-f0")  # fold_asha's: the named best is kept
    with pytest.raises(RuntimeError, match="stopped c-f0 at epoch 1, whose report names no committed best epoch"):
        check_stop(EpochReport(epoch=1, settled=False), "c-f0")
