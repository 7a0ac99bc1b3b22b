"""The Tune function trainable: one (config, fold) trial = one Ray Train TorchTrainer run.

Train V2 runs the TorchTrainer's controller inside this trainable; the workers
report each epoch to Train, and TuneReportCallback relays rank 0's metrics (plus
the checkpoint path) to Tune, where the scheduler and the MLflow callback see them.
In local mode (`resources.local_mode`) the TorchTrainer has no workers: the loop
runs right here and reports to Tune itself (train/session.py). Tune then hands
this process the slot's next trial (`reuse_actors`), so torch, timm and the
cache are imported and opened once per slot, not once per trial. A trial the
scheduler stops is waiting in its report, where Tune's reset ends it. Out of
local mode the process is not reused: there the trial waits in the controller's
`fit`, which a reset cannot end.

Faults: the Train run of a trial is named by its identity and lives in shared
storage, so a new TorchTrainer with that name continues from the run's latest
checkpoint. This trainable retries a failed run that way up to
`resources.max_failures` times (a worker killed, a node lost, an exception), but
not a non-finite loss (it repeats from the same checkpoint, so it fails at once)
nor a full disk (the driver stops the grid and says what to free).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.config import ResourcesConfig

# A custom resource only the head node has (init_ray declares it locally; cluster.yaml on `ray start --head`).
TRIAL_SLOTS = "orchestrator_trial_slots"
SLOT_UNITS = 1000.0


def trainable_resources(res: ResourcesConfig, slots: int | None) -> dict[str, float]:
    """What the trainable itself reserves: a share of TRIAL_SLOTS so `slots` fit (slots given), and
    in local mode its one worker's CPUs and GPUs, else no CPU.

    Out of local mode the trial's Train workers hold its CPUs and GPUs. The
    coordinator lives on the head (on-demand, never a spot node), so losing a
    worker node only costs the workers, which the retry below replaces; and the
    shares cap how many trials run at once. Tune's own max_concurrent_trials counts
    paused trials as running, so fold-aware ASHA's pausing could deadlock it; it is
    the fallback on clusters whose head lacks the resource (slots None).
    """
    if res.in_trial:
        own = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {})}
    else:
        own = {"CPU": 0, "memory": 64 * 1024**2}
    if slots is None:
        return own
    share = int(1e4 * SLOT_UNITS / slots) / 1e4  # Ray keeps 4 decimals: rounding down keeps `slots` within the total
    return {**own, TRIAL_SLOTS: share}


def is_nonfinite_loss(error: BaseException) -> bool:
    from orchestrator.train.loop import NonFiniteLossError

    if isinstance(error, NonFiniteLossError):  # local mode: the loop's own exception
        return True
    failures = getattr(error, "worker_failures", {}) or {}
    return any(isinstance(e, NonFiniteLossError) or NonFiniteLossError.__name__ in str(e) for e in failures.values())


def is_disk_full(error: BaseException) -> bool:
    """A full disk under the trial's storage (local mode: the loop's own error; else in a worker's failure)."""
    from orchestrator.storage import is_disk_full as full

    failures = getattr(error, "worker_failures", {}) or {}
    return full(error) or any(full(e) or full(str(e)) for e in failures.values())


def run_trial(config: dict[str, Any]) -> None:
    """Tune entry point; `config["trial"]` is a TrialConfig as a dict."""
    from orchestrator.config import TrialConfig
    from orchestrator.train.loop import NonFiniteLossError

    trial = TrialConfig.model_validate(config["trial"])
    if trial.resources.in_trial:
        import gc

        gc.collect()  # a reused process: the last trial's model, loaders and their workers go now
    attempt = 0
    while True:
        try:
            _trainer(trial.model_copy(update={"attempt": attempt})).fit()
            return
        except Exception as error:  # Ray Train's TrainingFailedError, or in local mode the loop's own
            if is_nonfinite_loss(error):
                raise NonFiniteLossError(f"{trial.trial_key}: the loss became NaN/inf (not retried: it would repeat "
                                         f"from the same checkpoint)\n{error}") from None
            if attempt >= trial.resources.max_failures or is_disk_full(error):  # a retry would fill it again
                raise
            attempt += 1
            print(f"{trial.trial_key}: training failed, retry {attempt}/{trial.resources.max_failures} from the "
                  f"last checkpoint:\n{error}", file=sys.stderr, flush=True)


def _trainer(trial: Any) -> Any:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestrator.train.loop import train_worker

    res = trial.resources
    worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {})}
    # NCCL only where GPUs talk to each other: one worker has no collectives, and gloo also starts
    # where a node declares GPUs but has no CUDA (the worker then trains on its CPU); a multi-worker
    # GPU trial needs real GPUs (NCCL does not start without one)
    backend = "nccl" if res.gpus_per_worker and res.workers_per_trial > 1 else "gloo"
    return TorchTrainer(
        train_worker,
        train_loop_config=trial.model_dump(mode="json"),
        torch_config=TorchConfig(backend=backend),
        scaling_config=ray.train.ScalingConfig(num_workers=0) if res.in_trial else ray.train.ScalingConfig(
            num_workers=res.workers_per_trial, use_gpu=res.gpus_per_worker > 0, resources_per_worker=worker),
        run_config=ray.train.RunConfig(
            name=trial.trial_key,
            storage_path=trial.layout.trials,
            callbacks=[TuneReportCallback()],
            # no checkpoint_config: the loop keeps its checkpoints itself (train/checkpointer.py)
            failure_config=ray.train.FailureConfig(max_failures=0),  # retried above, where NaN can be told apart
        ),
    )
