"""Wires one grid run: Ray, the Tune Tuner over the plan, the tracking callback."""

from __future__ import annotations

import math
import os
from typing import Any

from orchestrator.config import GridConfig, ResourcesConfig, TrialTables
from orchestrator.search.plan import PlannedTrial, fold_trials, trial_count
from orchestrator.search.schedulers import create_scheduler, tune_trial_key
from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS, run_trial, trainable_resources

# Ray Train polls workers this often; each report waits for the previous poll, so
# the default 2 s would dominate short epochs. Users can still set their own.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
# Logging a finished trial's artifacts to MLflow takes about a second in the driver
# callback; Tune's default 0.5 s "slow callback" warning would fire for every trial.
DRIVER_ENV = {"TUNE_WARN_THRESHOLD_S": "2"}


def init_ray(address: str | None, verbose: bool) -> None:
    """Start local Ray, or join a cluster (address, or RAY_ADDRESS)."""
    import ray

    env = {k: os.environ.get(k, v) for k, v in RAY_ENV.items()}
    os.environ.update(env)  # the Train controller runs inside the trainable, started from here
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=verbose,
             resources={TRIAL_SLOTS: SLOT_UNITS} if local else None,
             include_dashboard=None, configure_logging=True, logging_level="WARNING")


def autoscaler_full_size() -> dict[str, float]:
    """The cluster's resources at its largest, as its autoscaler reported them to Ray; empty without one.

    (A private Ray call, the one Ray Train and Ray Data size themselves by; an
    unbounded node group counts as unknown.)
    """
    import sys

    try:
        from ray._private.state import state

        grown = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # noqa: BLE001 - an older or newer Ray without it: plan for the nodes up now
        return {}
    return {key: float(value) for key, value in grown.items() if value < sys.maxsize}


def concurrent_trials(res: ResourcesConfig, totals: dict[str, float]) -> int:
    """How many trials fit `totals` (CPU, GPU) at once; each trial holds workers_per_trial workers."""
    fits = [totals.get("CPU", 0) / (res.cpus_per_worker * res.workers_per_trial)]
    if res.gpus_per_worker:
        fits.append(totals.get("GPU", 0) / (res.gpus_per_worker * res.workers_per_trial))
    capacity = max(1, math.floor(min(fits) + 1e-9))
    return min(capacity, res.max_concurrent_trials) if res.max_concurrent_trials else capacity


def cluster_totals() -> tuple[dict[str, float], bool]:
    """CPUs and GPUs to plan trials for, and whether that is the autoscaler's full size.

    Trials waiting for resources are what make an autoscaler add nodes, so on a
    cluster that can grow the count is taken at full size, not from the nodes up
    now (a fresh `ray up` has no GPU at all).
    """
    import ray

    now, grown = ray.cluster_resources(), autoscaler_full_size()
    totals = {key: max(now.get(key, 0), grown.get(key, 0)) for key in ("CPU", "GPU")}
    return totals, any(grown.get(key, 0) > now.get(key, 0) for key in totals)


def predict_remote(res: ResourcesConfig):
    """A Ray task (one worker's resources) that turns a best checkpoint into OOF + test frames."""
    import ray

    @ray.remote(num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker, max_retries=1)
    def predict(trial_config: dict[str, Any], checkpoint_path: str):
        import ray.train

        from orchestrator.config import TrialConfig
        from orchestrator.train.predict import predict_trial

        with ray.train.Checkpoint(checkpoint_path).as_directory() as folder:
            return predict_trial(TrialConfig.model_validate(trial_config), folder)

    return predict.remote


def run_tuner(grid: GridConfig, plan: list[PlannedTrial], tables: TrialTables, storage: str, callback: Any,
              stamp: str, seeds: dict[tuple[str, int], tuple[dict[int, float], bool]] | None = None) -> Any:
    """Run the trials under Tune (the planned ones, or TPE's proposals); returns Tune's ResultGrid.

    `seeds`: (config_id, fold) -> (earlier per-epoch scores, whether that fold ended), for fold_asha.
    """
    from ray import tune

    import ray

    totals, grows = cluster_totals()
    slots = concurrent_trials(grid.resources, totals)
    if grows:
        print(f"the autoscaler can grow this cluster to {totals['CPU']:g} CPUs and {totals['GPU']:g} GPUs: "
              f"{slots} trials at once, the nodes come as trials wait for them", flush=True)
    own_slots = ray.cluster_resources().get(TRIAL_SLOTS, 0) >= SLOT_UNITS
    if not own_slots:
        print(f"note: this cluster's head has no {TRIAL_SLOTS!r} resource (cluster.yaml declares it), so Tune's "
              f"max_concurrent_trials caps trials and fold_asha cannot pause a fold for its siblings", flush=True)
    scheduler = create_scheduler(grid.scheduler, grid.train.epochs)
    if hasattr(scheduler, "pausing"):
        scheduler.pausing = own_slots
    for (config_id, fold), (history, ended) in (seeds or {}).items():
        scheduler.seed(config_id, fold, history, ended)
    if grid.searcher == "optuna":
        from orchestrator.search.optuna import optuna_searcher

        def expand(model_index: int, values: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"trial": p.config.model_dump(mode="json")} for p in fold_trials(grid, model_index, values, tables, storage)]

        # TPE must wait for results before it proposes more: Tune's limiter (fold_asha, which pauses, is refused here)
        space = {}
        search = {"search_alg": optuna_searcher(grid, expand), "num_samples": trial_count(grid, plan),
                  "max_concurrent_trials": slots}
    else:
        space = {"trial": tune.grid_search([p.config.model_dump(mode="json") for p in plan])}
        search = {} if own_slots else {"max_concurrent_trials": slots}
    tuner = tune.Tuner(
        tune.with_resources(run_trial, trainable_resources(slots if own_slots else None)),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=grid.scheduler.metric, mode=grid.scheduler.mode, scheduler=scheduler,
            trial_name_creator=tune_trial_key, trial_dirname_creator=tune_trial_key, **search,
        ),
        run_config=tune.RunConfig(name=stamp, storage_path=f"{storage}/tune", callbacks=[callback], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),  # retries: in the trainable
    )
    return tuner.fit()
