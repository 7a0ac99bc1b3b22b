"""The one training loop: what every Ray Train worker of a trial runs.

Per epoch: train on the fold's training rows, evaluate on its validation rows,
keep a checkpoint (rank 0: train/checkpointer.py says when, and writes it in the
background) and report the metrics. A restarted trial continues from its latest
checkpoint, so a crash loses at most the epochs since it (one, by default). Where
the loop runs (Ray Train workers, or the Tune trial's own process) is the
`Session`'s business (train/session.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from orchestrator.config import TrialConfig
from orchestrator.metrics import validation_scores
from orchestrator.protocol import EpochReport
from orchestrator.train import checkpoint
from orchestrator.train.checkpoint import load_state, load_weights
from orchestrator.train.checkpointer import FULL, WEIGHTS, Checkpointer, CheckpointPolicy
from orchestrator.train.heads import HEADS, head_scores
from orchestrator.train.losses import create_loss
from orchestrator.train.optim import create_lr_scheduler, create_optimizer
from orchestrator.train.predict import Normalizer, predict_logits
from orchestrator.train.session import InTrial, Session, TrainWorkers, cuda_device
from orchestrator.train.setup import TrialSetup, build_trial
from orchestrator.train.step import StepParts, build_parts, train_one_epoch, updates_per_epoch, weight_sets


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf: the trial fails without retries."""


@dataclass
class TrialState:
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

    def advance(self, epoch: int) -> None:
        """A refit's epoch `epoch` (no validation rows: the latest epoch is the one kept)."""
        self.next_epoch = self.best_epoch = epoch + 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def evaluate(model, loader, targets: np.ndarray, device, normalize: Normalizer, task: str = "multiclass", world: int = 1,
             heads: str | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """The validation loss and every competition metric (orchestrator/metrics.py) over the whole validation fold
    (`loader`: this rank's stride of `world`); and for a multi-head model, each head's accuracy and macro F1."""
    logits = predict_logits(model, loader, device, normalize)
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, logits)
        order = np.concatenate([np.arange(r, len(targets), world) for r in range(world)])
        logits = torch.cat(gathered)[np.argsort(order)]
    targets = torch.as_tensor(np.asarray(targets))
    if task == "multilabel":  # a sigmoid per tag
        probs, loss = logits.double().sigmoid().numpy(), F.binary_cross_entropy_with_logits(logits, targets.float())
    else:
        probs, loss = logits.double().softmax(1).numpy(), F.cross_entropy(logits, targets)
    scores = {"val_loss": loss.item(), **validation_scores(probs, targets.numpy(), task)}  # EpochReport's scores
    return scores, head_scores(HEADS[heads], logits, targets) if heads else {}


def is_better(score: float, best: float | None, mode: str) -> bool:
    return best is None or (score > best if mode == "max" else score < best)


def keep_checkpoint(keeper: Checkpointer, kind: str | None, wait: bool, epoch_report: EpochReport, model,
                    parts: StepParts, progress: TrialState) -> float:
    """Write this epoch's checkpoint of `kind` (None: none; `wait`: until every write is committed); returns the
    seconds the training was held."""
    if kind is None:
        start = time.perf_counter()
        if wait:
            keeper.settle(block=True)
        return time.perf_counter() - start
    weights = weight_sets(model, parts)[0].state_dict()
    state = None if kind == WEIGHTS else {
        **(parts.state_dict(model) if kind == FULL else {}),  # a final checkpoint is not trained on from
        "next_epoch": progress.next_epoch, "best_score": progress.best_score, "best_epoch": progress.best_epoch,
        "since_best": progress.since_best, "report": epoch_report.as_result()}
    return keeper.save(kind, epoch_report.epoch, weights, state, (progress.best_epoch, progress.best_score), wait)


def restore(session: Session, model, parts: StepParts) -> TrialState:
    """Continue from the trial's latest resumable checkpoint, if there is one."""
    with checkpoint.restored(session.trial_dir, session.notes) as folder:
        if folder is None:
            return TrialState()
        state = load_state(folder)
        load_weights(folder, weight_sets(model, parts)[0])
    if "optimizer" in state:  # not in a trial's final checkpoint: it only replays
        parts.load_state_dict(model, state)
    return TrialState(state["next_epoch"], state["best_score"], state["best_epoch"], state.get("since_best", 0),
                      state.get("report") or state.get("metrics"))  # "metrics": checkpoints written before EpochReport


def predict_own(trial: TrialConfig, setup: TrialSetup, evaluated: torch.nn.Module, progress: TrialState, device) -> bool:
    """A trial that ends by itself predicts OOF + test from its best epoch here, before its last report, where
    everything is loaded already (a prediction task would start a process and import it all again).

    The best epoch's weights are the ones in memory, or its checkpoint's (loaded into a copy: the last
    checkpoint still gets the last weights). A scheduler's stop comes without warning, so a stopped
    trial is predicted by a task instead. False if anything fails here: the task then predicts.
    """
    import ray.train

    from orchestrator.train.predict import predict_frames, save_frames

    key = trial.trial_key
    try:
        model = evaluated
        if progress.best_epoch != progress.next_epoch:
            model = copy.deepcopy(evaluated)
            with ray.train.Checkpoint(trial.layout.checkpoint(key, progress.best_epoch)).as_directory() as folder:
                load_weights(folder, model)
        save_frames(predict_frames(setup, model, device), trial.layout.predictions(key))
        return True
    except Exception as error:  # noqa: BLE001 - the driver's prediction task is the fallback
        print(f"{key}: predicting in the trial failed, a prediction task will ({error})", flush=True)
        return False


def replay(session: Session, progress: TrialState, attempt: int, note: str = "") -> bool:
    """Re-report a restored checkpoint's epoch (the driver skips what it logged already); True if the trial had ended.

    A driver killed after an epoch's checkpoint was saved but before it logged the
    epoch (or predicted, after the last one) learns of it this way on --resume.
    """
    last = EpochReport.from_result(progress.last_report or {})
    if last is None:
        return False
    session.report(dataclasses.replace(last, replay=True, attempt=attempt, worker_node=worker_node(), restore_note=note))
    return last.trial_done


def worker_node() -> str:
    """This worker's node as "<ip>/<first 8 hex of the node id>": the IP for people, the id for nodes sharing one
    ("local" for a loop run outside Ray, as the unit tests run it: asking would start or join a cluster)."""
    import ray

    if not ray.is_initialized():
        return "local"

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def should_stop(trial: TrialConfig, progress: TrialState) -> bool:
    """Early stopping inside the trial: no improvement for `patience` epochs."""
    rule = trial.train.early_stopping
    return rule is not None and progress.since_best >= rule.patience


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point; `config` is a TrialConfig as a dict."""
    trial = TrialConfig.model_validate(config)
    trial_dir = trial.layout.trial_dir(trial.trial_key)
    run_loop(trial, InTrial(trial_dir) if trial.resources.in_trial else TrainWorkers(trial_dir))


def run_loop(trial: TrialConfig, session: Session) -> None:
    """Train the trial's fold epoch by epoch from its latest checkpoint, reporting each epoch to `session`."""
    from orchestrator.train.system import SystemSampler

    with SystemSampler() if session.rank == 0 else contextlib.nullcontext() as sampler:
        _run_epochs(trial, session, sampler)


def _run_epochs(trial: TrialConfig, session: Session, sampler) -> None:
    seed_everything(trial.seed * 1000 + trial.fold)
    run = Training.build(trial, session, sampler)
    progress = restore(session, run.model, run.parts)
    node, note = worker_node(), "; ".join(session.notes)  # the note goes with the first report, replayed or new
    if replay(session, progress, trial.attempt, note):
        return
    note = "" if progress.last_report else note
    cfg = trial.train
    policy = CheckpointPolicy.of(cfg.checkpoint, trial.scheduler, cfg.epochs, sum(p.numel() for p in run.setup.model.parameters()))
    keeper = Checkpointer(session.trial_dir, cfg.checkpoint.background, cfg.checkpoint.timeout_minutes * 60) \
        if session.rank == 0 else None
    if keeper is not None:
        keeper.durable = (progress.best_epoch, progress.best_score)  # a restored best is committed
    try:
        for epoch in range(progress.next_epoch, cfg.epochs):
            report, improved = run.epoch(epoch, progress, keeper, node, note)
            note = ""
            if keeper is not None:
                report = checkpointed(keeper, policy, report, improved, run, progress)
            session.report(report)
            if report.trial_done:
                return
    finally:
        if keeper is not None:  # the loop's own error (a NaN loss) stays the one raised: a write error is said
            keeper.close(quiet=sys.exc_info()[0] is not None)


def checkpointed(keeper: Checkpointer, policy: CheckpointPolicy, report: EpochReport, improved: bool, run: Training,
                 progress: TrialState) -> EpochReport:
    """Keep the epoch's checkpoint as `policy` says (rank 0); the report with what the training was held for in
    all (its `checkpoint_s` so far, and this) and the best epoch whose checkpoint is committed."""
    kind = policy.kind(report.epoch, improved, report.trial_done, keeper.busy())
    # a trial's first checkpoint is waited for too: a stop before any report named a best would leave the driver
    # nothing to predict from
    wait = policy.waits(report.epoch, kind) or not keeper.durable[0]
    held = report.checkpoint_s + keep_checkpoint(keeper, kind, wait, report, run.model, run.parts, progress)
    return keeper.report(report, held)


@dataclass
class Training:
    """What a trial trains with, built once per start (a retry or a resume builds it again), and one epoch of it."""

    trial: TrialConfig
    session: Session
    sampler: Any  # the rank-0 worker's SystemSampler, else None
    device: torch.device
    setup: TrialSetup
    model: torch.nn.Module  # as the session prepared it (on the device; DDP-wrapped with workers)
    loader: Any
    val_loader: Any  # None for a refit: no validation rows, it trains its epochs and keeps the last one
    val_targets: np.ndarray  # class indices, or multi-hot tags (rows, tags)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    parts: StepParts

    @classmethod
    def build(cls, trial: TrialConfig, session: Session, sampler: Any) -> Training:
        cfg, device = trial.train, cuda_device()
        setup = build_trial(trial)
        val_loader = None if trial.refit else setup.val_loader(session.rank, session.world)
        optimizer = create_optimizer(setup.model, cfg.optimizer)
        model, loader = session.prepare(setup.model, setup.train_loader(), device)
        scheduler = create_lr_scheduler(optimizer, cfg.scheduler, cfg.epochs, updates_per_epoch(len(loader), cfg.accumulate_steps),
                                        trial.scheduler.mode)
        loss_fn = create_loss(cfg.loss, setup.class_counts(), trial.model.heads).to(device)
        parts = build_parts(cfg, model, optimizer, scheduler, loss_fn, device, trial.tables.num_classes, setup.normalize,
                            trial.data.image_size, multi_label=trial.data.task == "multilabel")
        return cls(trial, session, sampler, device, setup, model, loader, val_loader, setup.targets(setup.val_rows),
                   optimizer, scheduler, parts)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validation and predictions use (the EMA's, where there is one)."""
        return weight_sets(self.model, self.parts)[0]

    def epoch(self, epoch: int, progress: TrialState, keeper: Checkpointer | None, node: str,
              note: str) -> tuple[EpochReport, bool]:
        """Train and validate epoch `epoch` (0-based) and record it in `progress`; at the trial's end (rank 0) its
        own predictions. Returns the epoch's report, before its checkpoint, and whether the epoch is a new best."""
        trial, cfg, start = self.trial, self.trial.train, time.perf_counter()
        # each epoch's randomness (shuffle order; augmentation without loader processes) is a function of the
        # trial and the epoch, so a resumed trial trains as the uninterrupted one would have
        seed_everything((trial.seed * 1000 + trial.fold) * 10_000 + epoch)
        self.setup.start_epoch(epoch)  # curriculum: a function of the epoch alone, so a resumed trial gets the same
        train_loss, seen, waited = train_one_epoch(self.model, self.loader, self.parts, epoch)
        train_time = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"train_loss is {train_loss} in epoch {epoch + 1}: lower train.optimizer.lr or check the data")
        scores, per_head = self.validate()
        metric, mode = trial.scheduler.metric, trial.scheduler.mode
        if self.scheduler is not None:
            self.scheduler.step(epoch + 1, scores.get(metric))  # None: a plateau schedule keeps its rate in a refit
        done = epoch + 1 == cfg.epochs
        if trial.refit:  # its last epoch is the one kept: the others are not each a best for sparse checkpoints
            progress.advance(epoch)
            improved = done
        else:
            improved = progress.update(scores[metric], epoch, mode, cfg.early_stopping.min_delta if cfg.early_stopping else 0.0)
            done = done or should_stop(trial, progress)
        epoch_time = time.perf_counter() - start
        held, predicted, predict_s = self.finish(progress, keeper) if done and keeper is not None else (0.0, False, 0.0)
        return EpochReport(
            epoch=epoch + 1, train_loss=train_loss, lr=self.optimizer.param_groups[0]["lr"], **scores,
            epoch_time_s=epoch_time, images_per_s=seen * self.session.world / max(train_time, 1e-9), data_wait_s=waited,
            checkpoint_s=held, trial_done=done, best_epoch=progress.best_epoch, best_score=progress.best_score,
            attempt=trial.attempt, worker_node=node, predicted=predicted, predict_s=predict_s,
            system=self.sampler.take() if self.sampler is not None else {}, heads=per_head, restore_note=note), improved

    def validate(self) -> tuple[dict[str, float], dict[str, float]]:
        """The fold's validation scores and, for a multi-head model, each head's ({} and {} for a refit)."""
        if self.val_loader is None:
            return {}, {}
        return evaluate(self.evaluated, self.val_loader, self.val_targets, self.device, self.setup.normalize, self.trial.data.task,
                        self.session.world, self.trial.model.heads)

    def finish(self, progress: TrialState, keeper: Checkpointer) -> tuple[float, bool, float]:
        """The trial's end on rank 0: wait for the best epoch's checkpoint (its predictions may read it), then
        predict OOF + test here. Returns (seconds the wait held it, whether it predicted, seconds predicting)."""
        start = time.perf_counter()
        keeper.settle(block=True)
        held = time.perf_counter() - start
        predicted = predict_own(self.trial, self.setup, self.evaluated, progress, self.device)
        return held, predicted, time.perf_counter() - start - held
