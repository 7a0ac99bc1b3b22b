"""The Tune function trainable: one (config, fold) trial = one Ray Train TorchTrainer run.

Train V2 runs the TorchTrainer's controller inside this trainable; the workers
report each epoch to Train, and TuneReportCallback relays rank 0's metrics (plus
the checkpoint path) to Tune, where ASHA and the MLflow callback see them.
"""

from __future__ import annotations

from typing import Any

# The trainable itself only coordinates: it reserves no CPU (the Train workers
# hold the trial's CPUs/GPUs) but must reserve something for Tune to place it.
TRAINABLE_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}


def run_trial(config: dict[str, Any]) -> None:
    """Tune entry point; `config["trial"]` is a TrialConfig as a dict."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestrator.config import TrialConfig
    from orchestrator.train.loop import CHECKPOINT_RANK, train_worker

    trial = TrialConfig.model_validate(config["trial"])
    res = trial.resources
    worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=config["trial"],
        scaling_config=ray.train.ScalingConfig(num_workers=res.workers_per_trial, use_gpu=res.gpus_per_worker > 0,
                                               resources_per_worker=worker),
        run_config=ray.train.RunConfig(
            name=trial.trial_key,
            storage_path=f"{trial.storage}/trials",
            callbacks=[TuneReportCallback()],
            # keeps the best checkpoint (for predictions) and the latest (to resume)
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_RANK,
                                                         checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    trainer.fit()
