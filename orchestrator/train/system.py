"""System metrics of the node a trial's rank-0 worker runs on, sampled during each epoch.

MLflow's own monitors do the sampling (CPU and memory always; GPU utilisation and
memory where `nvidia-ml-py` finds a GPU), in a background thread. The worker takes
the epoch's means with its report; the driver logs them under MLflow's `system/`
names, which fill the run's System metrics tab (only the driver writes to MLflow).
Without MLflow on a worker there is simply nothing to report.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any


def _monitors() -> list[Any]:
    found: list[Any] = []
    try:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor

        found.append(CPUMonitor())
    except ImportError:
        return found
    try:
        import logging

        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        # it warns on every sample where NVML lacks a reading (power on some GPUs, MIG): once a second per trial
        logging.getLogger(GPUMonitor.__module__).setLevel(logging.ERROR)
        found.append(_own_gpus(GPUMonitor()))
    except Exception:  # noqa: BLE001 - no nvidia-ml-py, or no GPU (NVML's own errors): CPU only
        pass
    return found


def _own_gpus(monitor: Any) -> Any:
    """Only the GPUs this process was given (Ray sets CUDA_VISIBLE_DEVICES), numbered as the trial sees them
    (gpu_0 = its cuda:0): NVML itself counts every GPU of the node."""
    import os

    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return monitor
    visible = [v.strip() for v in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if v.strip()]
    if all(v.isdigit() for v in visible):  # (UUIDs: left as NVML counts them)
        import pynvml

        monitor.gpu_handles = [pynvml.nvmlDeviceGetHandleByIndex(int(v)) for v in visible]
        monitor.num_gpus = len(visible)
    return monitor


class SystemSampler:
    """Samples every `interval_s` until `close()`; `take()` returns the means since the previous take (at least
    one sample: an epoch shorter than the interval gets one as it ends)."""

    def __init__(self, interval_s: float = 1.0):
        self.monitors = _monitors()
        for monitor in self.monitors:  # psutil's CPU share counts from its previous call: prime it
            with contextlib.suppress(Exception):
                monitor.collect_metrics()
                monitor.clear_metrics()
        self.interval_s = interval_s
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="system-metrics", daemon=True)
        if self.monitors:
            self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            with self.lock:
                for monitor in self.monitors:
                    with contextlib.suppress(Exception):  # a failed sample is a gap, not a failed trial
                        monitor.collect_metrics()

    def take(self) -> dict[str, float]:
        """{MLflow's metric name without `system/`: the mean since the last take}."""
        out: dict[str, float] = {}
        with self.lock:
            for monitor in self.monitors:
                if not monitor.metrics:  # an epoch shorter than the interval: one sample now
                    with contextlib.suppress(Exception):
                        monitor.collect_metrics()
                if monitor.metrics:
                    out.update({k: float(v) for k, v in monitor.aggregate_metrics().items()})
                monitor.clear_metrics()
        return out

    def close(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def __enter__(self) -> SystemSampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
