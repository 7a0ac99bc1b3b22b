"""Wires one grid run: Ray, the Tune Tuner over the plan, the tracking callback."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import GridConfig, ResourcesConfig, TrialTables
from orchestrator.search.plan import PlannedTrial, fold_trials, trial_count
from orchestrator.search.schedulers import Seeds, create_scheduler, tune_trial_key
from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS, run_trial, trainable_resources

# Ray Train polls workers this often; each report waits for the previous poll, so
# the default 2 s would dominate short epochs. A reused trial process (local mode)
# waits this long for the last trial's loop to wind down (its loaders' workers
# exit) before it takes the next trial; past it Tune fails the next trial, and the
# default 2 s is close on a busy node. Users can still set their own.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}
# Logging a finished trial's artifacts to MLflow takes about a second in the driver
# callback; Tune's default 0.5 s "slow callback" warning would fire for every trial.
# Tune's own console output (its boxes, tables and tracebacks) is off: the tool prints
# its lines, and Ray's log lines go to the grid's ray-driver.log (--verbose: the console).
DRIVER_ENV = {"TUNE_WARN_THRESHOLD_S": "2", "RAY_AIR_NEW_OUTPUT": "0"}


def ray_is_local(address: str | None) -> bool:
    """Whether this run starts its own Ray on this machine (no address, no RAY_ADDRESS)."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def settle_local_mode(grid: GridConfig, address: str | None) -> GridConfig:
    """The grid with `resources.local_mode: auto` made on or off for the Ray this run uses."""
    return grid.model_copy(update={"resources": grid.resources.settled(ray_is_local(address))})


def init_ray(address: str | None, verbose: bool, log_file: Path | None = None) -> None:
    """Start local Ray, or join a cluster (address, or RAY_ADDRESS); Ray's driver-side log lines go to `log_file`
    (given, and not `verbose`) instead of the console."""
    import ray

    env = {k: os.environ.get(k, v) for k, v in RAY_ENV.items()}
    os.environ.update(env)  # the Train controller runs inside the trainable, started from here
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    local = ray_is_local(address)
    quiet = log_file is not None and not verbose
    with ray_logs_to(log_file) if quiet else contextlib.nullcontext():
        # "local": a Ray of its own even when `ray start` runs on this machine (ray.init would join that one and
        # then refuse the slot resources); --address auto joins it
        ray.init(address="local" if local else address, runtime_env={"env_vars": env}, log_to_driver=verbose,
                 resources={TRIAL_SLOTS: SLOT_UNITS} if local else None,
                 include_dashboard=None, configure_logging=not quiet, logging_level="WARNING")


@contextlib.contextmanager
def ray_logs_to(path: Path) -> Iterator[None]:
    """Ray's loggers (Tune's and Train's are below "ray") write to `path` only, at INFO and up, from within the
    context (ray.init without its logging setup clears the "ray" logger's handlers: they pass through the root's
    then) to the end of the run."""
    import logging

    class QuietFileHandler(logging.FileHandler):
        def handleError(self, record):  # a full disk: the log line is lost, not printed with a traceback
            pass

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = QuietFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger, root = logging.getLogger("ray"), logging.getLogger()
    ray_logger.propagate = True
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        ray_logger.handlers.clear()
        ray_logger.addHandler(handler)
        ray_logger.setLevel(logging.INFO)
        ray_logger.propagate = False


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
    """A Ray task (one worker's resources) that turns a best checkpoint into OOF + test frames, and its seconds."""
    import ray

    @ray.remote(num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker, max_retries=1)
    def predict(trial_config: dict[str, Any], checkpoint_path: str) -> tuple[dict[str, Any], float]:
        """(the frames, the task's own seconds: imports included, the wait for resources not)."""
        import time

        start = time.monotonic()
        import ray.train

        from orchestrator.config import TrialConfig
        from orchestrator.train.predict import predict_trial

        with ray.train.Checkpoint(checkpoint_path).as_directory() as folder:
            return predict_trial(TrialConfig.model_validate(trial_config), folder), time.monotonic() - start

    return predict.remote


def explain_remote(res: ResourcesConfig):
    """A Ray task (one worker's resources) that draws Grad-CAM overlays of a trial's best checkpoint (train/explain.py)."""
    import ray

    @ray.remote(num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker, max_retries=0)
    def explain(trial_config: dict[str, Any], checkpoint_path: str, paths: list[str], classes: list[int]) -> list[Any]:
        import ray.train

        from orchestrator.config import TrialConfig
        from orchestrator.train.explain import gradcam_overlays

        with ray.train.Checkpoint(checkpoint_path).as_directory() as folder:
            return gradcam_overlays(TrialConfig.model_validate(trial_config), folder, paths, classes)

    return explain.remote


@dataclass(frozen=True)
class Slots:
    count: int  # trials at once
    own: bool  # the cluster has the trial-slot resource: shares of it cap trials (else Tune's max_concurrent_trials)


def trial_slots(grid: GridConfig) -> Slots:
    """How many trials run at once on this cluster (at its full size), and what caps them; says so when it matters."""
    import ray

    totals, grows = cluster_totals()
    slots = Slots(concurrent_trials(grid.resources, totals), ray.cluster_resources().get(TRIAL_SLOTS, 0) >= SLOT_UNITS)
    if grows:
        print(f"the autoscaler can grow this cluster to {totals['CPU']:g} CPUs and {totals['GPU']:g} GPUs: "
              f"{slots.count} trials at once, the nodes come as trials wait for them", flush=True)
    if not slots.own:
        print(f"note: this cluster's head has no {TRIAL_SLOTS!r} resource (cluster.yaml declares it), so Tune's "
              f"max_concurrent_trials caps trials and fold_asha cannot pause a fold for its siblings", flush=True)
    return slots


def search_space(grid: GridConfig, plan: list[PlannedTrial], tables: TrialTables, slots: Slots) -> tuple[dict, dict]:
    """(Tune's param_space, the TuneConfig arguments that pick trials): the plan as a grid, or TPE's proposals."""
    from ray import tune

    if grid.searcher == "optuna":
        from orchestrator.search.optuna import optuna_searcher

        def expand(model_index: int, values: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"trial": p.config.model_dump(mode="json")} for p in fold_trials(grid, model_index, values, tables)]

        # TPE must wait for results before it proposes more: Tune's limiter (fold_asha, which pauses, is refused here)
        return {}, {"search_alg": optuna_searcher(grid, expand), "num_samples": trial_count(grid, plan),
                    "max_concurrent_trials": slots.count}
    space = {"trial": tune.grid_search([p.config.model_dump(mode="json") for p in plan])}
    return space, {} if slots.own else {"max_concurrent_trials": slots.count}


def run_tuner(grid: GridConfig, plan: list[PlannedTrial], tables: TrialTables, callback: Any, stamp: str,
              slots: Slots, seeds: Seeds | None = None) -> Any:
    """Run the trials under Tune (the planned ones, or TPE's proposals) in `slots`; returns Tune's ResultGrid.

    `seeds`: what earlier runs of planned folds left, for fold_asha's rungs.
    """
    from ray import tune

    space, search = search_space(grid, plan, tables, slots)
    tuner = tune.Tuner(
        tune.with_resources(run_trial, trainable_resources(grid.resources, slots.count if slots.own else None)),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=grid.scheduler.metric, mode=grid.scheduler.mode, scheduler=create_scheduler(grid, slots.own, seeds),
            trial_name_creator=tune_trial_key, trial_dirname_creator=tune_trial_key, **search,
            # in local mode a trial's process takes the next trial, imports and all (see trainable.py)
            reuse_actors=grid.resources.in_trial,
        ),
        run_config=tune.RunConfig(name=stamp, storage_path=grid.layout.tune, callbacks=[callback], verbose=0,
                                  stop=callback.stopper,  # the callback ends the grid at once on a full disk
                                  failure_config=tune.FailureConfig(max_failures=0)),  # retries: in the trainable
    )
    return tuner.fit()
