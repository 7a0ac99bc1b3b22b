"""The one training loop: what every Ray Train worker of a trial runs.

Per epoch: train on the fold's training rows, evaluate on its validation rows,
report the metrics with a checkpoint (rank 0 writes it). A trial restarted by Ray
Train continues from its latest checkpoint, so a crash loses at most one epoch.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from orchestrator.config import TrialConfig
from orchestrator.data.dataset import ImageDataset
from orchestrator.layout import checkpoint_dir_name
from orchestrator.protocol import EpochReport
from orchestrator.train.checkpoint import load_state, load_weights, save_checkpoint, unwrap
from orchestrator.train.losses import create_loss
from orchestrator.train.optim import create_lr_scheduler, create_optimizer
from orchestrator.train.predict import predict_logits
from orchestrator.train.setup import build_trial
from orchestrator.train.step import StepParts, build_parts, train_one_epoch, updates_per_epoch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf: the trial fails without retries."""


@dataclass
class Progress:
    """What a checkpoint must carry besides weights to continue a trial."""

    next_epoch: int = 0
    best_score: float | None = None
    best_epoch: int = 0
    since_best: int = 0  # epochs since the last improvement (early stopping)
    last_report: dict[str, Any] | None = None  # what the checkpointed epoch reported (EpochReport.as_result)

    def update(self, score: float, epoch: int, mode: str, min_delta: float = 0.0) -> bool:
        """Record epoch `epoch`'s score; True when it is a new best (by more than min_delta)."""
        self.next_epoch = epoch + 1
        margin = min_delta if mode == "max" else -min_delta
        if self.best_score is None or is_better(score - margin, self.best_score, mode):
            self.best_score, self.best_epoch, self.since_best = score, epoch + 1, 0
            return True
        self.since_best += 1
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def evaluate(model, val_set: ImageDataset, batch_size: int, device) -> dict[str, float]:
    """Loss, accuracy and macro F1 over the whole validation fold (each DDP rank takes a stride)."""
    import ray.train
    from sklearn.metrics import f1_score

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    shard = torch.utils.data.Subset(val_set, range(rank, len(val_set), world))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size * 2)
    logits = predict_logits(model, loader, device)
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, logits)
        order = np.concatenate([np.arange(r, len(val_set), world) for r in range(world)])
        logits = torch.cat(gathered)[np.argsort(order)]
    targets = torch.as_tensor(val_set.targets)
    predicted = logits.argmax(1)
    return {  # EpochReport's validation scores
        "val_loss": torch.nn.functional.cross_entropy(logits, targets).item(),
        "val_acc": (predicted == targets).float().mean().item(),
        "val_f1": float(f1_score(targets.numpy(), predicted.numpy(), average="macro")),
    }


def is_better(score: float, best: float | None, mode: str) -> bool:
    return best is None or (score > best if mode == "max" else score < best)


def weight_sets(model, parts: StepParts):
    """(the weights that are validated, checkpointed as model.pt and predict; the other set when EMA is on, else None)."""
    if parts.ema is None:
        return unwrap(model), None
    return (parts.ema.module, unwrap(model)) if parts.evaluate_ema else (unwrap(model), parts.ema.module)


def report(epoch_report: EpochReport, model, parts: StepParts, progress: Progress) -> None:
    """Report one epoch to Ray Train (-> Tune -> ASHA, MLflow); rank 0 attaches the checkpoint."""
    import ray.train

    result = epoch_report.as_result()
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(result)
        return
    state = {"optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict() if parts.scheduler else {},
             "next_epoch": progress.next_epoch, "best_score": progress.best_score, "best_epoch": progress.best_epoch,
             "since_best": progress.since_best, "report": result}
    if parts.ema is not None:  # model.pt holds the evaluated weights; the state carries the other set
        state["other_weights"] = weight_sets(model, parts)[1].state_dict()
    if parts.scaler is not None:
        state["scaler"] = parts.scaler.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(folder, weight_sets(model, parts)[0], state)
        ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(folder),
                         checkpoint_dir_name=checkpoint_dir_name(progress.next_epoch))


def restore(model, parts: StepParts) -> Progress:
    """Continue from Ray Train's latest checkpoint of this trial, if there is one."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Progress()
    with checkpoint.as_directory() as folder:
        state = load_state(folder)
        evaluated, other = weight_sets(model, parts)
        load_weights(folder, evaluated)
        if other is not None:
            other.load_state_dict(state["other_weights"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scheduler is not None and state["scheduler"]:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler is not None and "scaler" in state:
        parts.scaler.load_state_dict(state["scaler"])
    return Progress(state["next_epoch"], state["best_score"], state["best_epoch"], state.get("since_best", 0),
                    state.get("report") or state.get("metrics"))  # "metrics": checkpoints written before EpochReport


def replay(progress: Progress, attempt: int) -> bool:
    """Re-report a restored checkpoint's epoch (the driver skips what it logged already); True if the trial had ended.

    A driver killed after an epoch's checkpoint was saved but before it logged the
    epoch (or predicted, after the last one) learns of it this way on --resume.
    """
    import ray.train

    last = EpochReport.from_result(progress.last_report or {})
    if last is None:
        return False
    again = dataclasses.replace(last, checkpoint_rank=-1.0, replay=True, attempt=attempt, worker_node=worker_node())
    ray.train.report(again.as_result())
    return last.trial_done


def worker_node() -> str:
    """This worker's node as "<ip>/<first 8 hex of the node id>": the IP for people, the id for nodes sharing one."""
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def worker_device() -> torch.device:
    """The GPU Ray gave this worker, or the CPU where CUDA is absent (a cluster declaring GPUs that torch cannot use)."""
    import ray.train.torch

    return ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")


def should_stop(trial: TrialConfig, progress: Progress) -> bool:
    """Early stopping inside the trial: no improvement for `patience` epochs."""
    rule = trial.train.early_stopping
    return rule is not None and progress.since_best >= rule.patience


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point; `config` is a TrialConfig as a dict."""
    import ray.train.torch

    trial = TrialConfig.model_validate(config)
    cfg = trial.train
    seed_everything(trial.seed * 1000 + trial.fold)
    device = worker_device()
    setup = build_trial(trial)
    model = setup.model
    loader = ray.train.torch.prepare_data_loader(setup.train_loader(), move_to_device=False)  # shards across workers
    val_set = setup.val_set()
    optimizer = create_optimizer(model, cfg.optimizer)
    metric, mode = trial.scheduler.metric, trial.scheduler.mode
    scheduler = create_lr_scheduler(optimizer, cfg.scheduler, cfg.epochs, updates_per_epoch(len(loader), cfg.accumulate_steps), mode)
    model = ray.train.torch.prepare_model(model, move_to_device=device)  # DDP when there are several workers
    loss_fn = create_loss(cfg.loss, setup.class_counts()).to(device)
    parts = build_parts(cfg, model, optimizer, scheduler, loss_fn, device, trial.tables.num_classes)
    progress = restore(model, parts)
    node = worker_node()
    if replay(progress, trial.attempt):
        return
    for epoch in range(progress.next_epoch, cfg.epochs):
        start = time.perf_counter()
        train_loss, seen = train_one_epoch(model, loader, parts, epoch)
        train_time = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"train_loss is {train_loss} in epoch {epoch + 1}: lower train.optimizer.lr or check the data")
        scores = evaluate(weight_sets(model, parts)[0], val_set, cfg.batch_size, device)
        if scheduler is not None:
            scheduler.step(epoch + 1, scores[metric])
        improved = progress.update(scores[metric], epoch, mode, cfg.early_stopping.min_delta if cfg.early_stopping else 0.0)
        done = epoch + 1 == cfg.epochs or should_stop(trial, progress)
        epoch_report = EpochReport(
            epoch=epoch + 1, train_loss=train_loss, lr=optimizer.param_groups[0]["lr"], **scores,
            epoch_time_s=time.perf_counter() - start,
            images_per_s=seen * ray.train.get_context().get_world_size() / max(train_time, 1e-9),
            checkpoint_rank=float(epoch + 1) if improved else -1.0, trial_done=done, best_epoch=progress.best_epoch,
            best_score=progress.best_score, attempt=trial.attempt, worker_node=node)
        report(epoch_report, model, parts, progress)
        if done:
            return
