"""What a trial cost: its wall time, and the CPU- and GPU-hours it held (resources held x time).

A trial holds its workers' CPUs and GPUs from its start (or unpausing) to its end
(or pause), and a stopped trial's prediction task holds one worker's. The seconds
come from the grid's `TimeAccount`; a run continued by `--resume` adds what its
earlier invocations cost (the run's `cost_*` metrics), so a run's figures are its
whole cost.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from orchestrator.config import ResourcesConfig


@dataclass(frozen=True)
class Cost:
    wall_s: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics: `cost_wall_s`, `cost_cpu_hours`, `cost_gpu_hours`."""
        return {f"cost_{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_metrics(cls, metrics: dict[str, float]) -> Cost:
        """A run's logged cost (zero where it has none: runs of older versions)."""
        return cls(*(float(metrics.get(f"cost_{f.name}", 0.0)) for f in fields(cls)))

    def render(self) -> str:
        gpu = f", {self.gpu_hours:.3f} GPU-h" if self.gpu_hours else ""
        return f"{self.cpu_hours:.3f} CPU-h{gpu}"


def total(costs) -> Cost:
    out = Cost()
    for cost in costs:
        out = out + cost
    return out


def held(res: ResourcesConfig) -> tuple[float, float]:
    """(CPUs, GPUs) a trial holds: its one worker's in local mode, else all its workers' (the trainable holds none)."""
    workers = 1 if res.in_trial else res.workers_per_trial
    return workers * res.cpus_per_worker, workers * res.gpus_per_worker


def trial_cost(trial_seconds: float, prediction_seconds: float, res: ResourcesConfig) -> Cost:
    """A trial's cost from its seconds in a slot and its prediction task's seconds (one worker's resources)."""
    cpus, gpus = held(res)
    return Cost(wall_s=trial_seconds + prediction_seconds,
                cpu_hours=(trial_seconds * cpus + prediction_seconds * res.cpus_per_worker) / 3600,
                gpu_hours=(trial_seconds * gpus + prediction_seconds * res.gpus_per_worker) / 3600)
