"""Where a grid's time went: each trial slot's seconds split into epochs, start-up, predictions and the rest.

Pure bookkeeping on the driver's clock (no Ray, no MLflow): the Tune callback
tells it when a trial starts, reports an epoch, pauses or ends, and how long its
prediction task ran. A trial's stretch in a slot (from its start, or its
unpausing, to its end or pause) splits into

- start-up: from the start to its first report, less what the worker measured before it (below);
- epochs: the epoch times the worker measured (train + validation), the useful part;
- checkpoints: what the epochs' checkpoints held the training for (the worker measured it: a
  copy into memory, the rest is written in the background; the last epoch's write whole);
- between epochs: the rest of the gaps between reports (reports, retries);
- shutdown: from its last report to Tune's end event.

- predictions: the OOF + test predictions of a trial that ends by itself (made before its last
  report, measured by the worker); and a stopped trial's prediction task, which holds a worker's
  CPUs (and GPU) while it runs, so its run (measured in the task, placed just before the driver
  collected it) is slot time too. What is left of slots x wall is idle: a slot with no
trial (scheduling, waiting for resources, the grid's tail). The driver's own time
in the callback (MLflow logging, mostly) is counted apart: it is not slot time,
but Tune's event loop waits for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Stretch:
    """One trial's time in a slot, from a start to an end or a pause."""

    key: str
    start: float
    # (arrival, then what the worker measured before it: the epoch, its checkpoint's hold, the trial's predictions)
    reports: list[tuple[float, float, float, float]] = field(default_factory=list)
    end: float | None = None

    def parts(self, now: float) -> dict[str, float]:
        end = self.end if self.end is not None else now
        if not self.reports:
            return {"start-up": end - self.start}
        (first, *first_parts), last = self.reports[0], self.reports[-1][0]
        epochs, checkpoints, predictions = (sum(r[i] for r in self.reports) for i in (1, 2, 3))
        return {"start-up": max(0.0, first - sum(first_parts) - self.start),
                "epochs": epochs,
                "checkpoints": checkpoints,
                "predictions": predictions,
                "between epochs": max(0.0, last - first - (epochs + checkpoints + predictions - sum(first_parts))),
                "shutdown": max(0.0, end - last)}


@dataclass(frozen=True)
class TimeSummary:
    wall: float
    slots: int
    seconds: dict[str, float]  # slot seconds by part, idle included
    driver: float  # the driver's seconds in the callback
    between_runs: float = 0.0  # the driver's work between the fold trials' Tune run and the refits' (not in `wall`)

    @property
    def slot_time(self) -> float:
        return self.slots * self.wall

    @property
    def useful_share(self) -> float:
        """Epoch seconds over slot seconds: the share of the grid's capacity that trained or validated."""
        return self.seconds.get("epochs", 0.0) / self.slot_time if self.slot_time > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """For the parent MLflow run."""
        return {"time_wall_s": self.wall, "time_useful_share": self.useful_share, "time_driver_s": self.driver,
                **({"time_between_runs_s": self.between_runs} if self.between_runs else {}),
                **{f"time_{part.replace(' ', '_').replace('-', '_')}_s": s for part, s in self.seconds.items()}}

    def render(self) -> str:
        lines = [f"where the time went: {self.slots} trial slot(s) x {self.wall:.0f} s = {self.slot_time:.0f} slot-s"]
        for part, seconds in self.seconds.items():
            share = seconds / self.slot_time if self.slot_time > 0 else 0.0
            lines.append(f"  {part:<16}{seconds:8.1f} s {share:6.1%}  {_MEANING[part]}")
        lines.append(f"  driver callback {self.driver:8.1f} s          MLflow logging and progress, in Tune's event loop")
        if self.between_runs:
            lines.append(f"  between runs    {self.between_runs:8.1f} s          insight and choosing refits, before the "
                         f"refits' Tune run (no trial slots held)")
        return "\n".join(lines)


_MEANING = {
    "epochs": "training + validation (the useful share)",
    "start-up": "trial start to its first report, less that epoch's own parts",
    "checkpoints": "training held for checkpoints (a memory copy; the last whole)",
    "between epochs": "reports, retries",
    "shutdown": "last report to Tune's end event",
    "predictions": "OOF + test: in trials that ended by themselves, tasks for stopped ones",
    "idle": "no trial in the slot: scheduling, waiting for resources, the tail",
}


class TimeAccount:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.begin = clock()
        self.stretches: list[Stretch] = []
        self.open: dict[str, Stretch] = {}
        self.predictions: list[tuple[str, float, float]] = []  # (key, start, end) of prediction tasks
        self.driver = 0.0
        self.between_runs = 0.0  # the driver's own work between two Tune runs (insight, choosing refits): no slot's
        self.run_ended: float | None = None

    def started(self, key: str) -> None:
        self.left(key)
        self.open[key] = stretch = Stretch(key, self.clock())
        self.stretches.append(stretch)

    def reported(self, key: str, epoch_seconds: float, checkpoint_seconds: float = 0.0, predict_seconds: float = 0.0) -> None:
        """An epoch's report arrived: the epoch took `epoch_seconds`, then its checkpoint held it `checkpoint_seconds`
        and (a last epoch) its own predictions took `predict_seconds`."""
        if key in self.open:
            finite = [v if math.isfinite(v) else 0.0 for v in (epoch_seconds, checkpoint_seconds, predict_seconds)]
            self.open[key].reports.append((self.clock(), *finite))

    def left(self, key: str) -> None:
        """The trial ended, failed or was paused."""
        if key in self.open:
            self.open.pop(key).end = self.clock()

    def prediction_ran(self, key: str, seconds: float) -> None:
        """A prediction task that ran `seconds` was collected now (0 s: frames the trial made itself)."""
        if seconds > 0:
            now = self.clock()
            self.predictions.append((key, now - seconds, now))

    def seconds_of(self, key: str) -> tuple[float, float]:
        """(the trial's seconds in slots so far, its prediction tasks' seconds): what it held resources for."""
        now = self.clock()
        held = sum((s.end if s.end is not None else now) - s.start for s in self.stretches if s.key == key)
        return held, sum(end - start for k, start, end in self.predictions if k == key)

    def tune_ended(self) -> None:
        self.run_ended = self.clock()

    def tune_started(self) -> None:
        """A later Tune run of the same grid (refits): the time since the last one ended is not slot time."""
        if self.run_ended is not None:
            self.between_runs += self.clock() - self.run_ended
            self.run_ended = None

    @contextmanager
    def in_driver(self):
        start = self.clock()
        try:
            yield
        finally:
            self.driver += self.clock() - start

    def summary(self, slots: int) -> TimeSummary:
        now = self.clock()
        seconds = dict.fromkeys(["epochs", "start-up", "checkpoints", "between epochs", "shutdown", "predictions"], 0.0)
        for stretch in self.stretches:
            for part, value in stretch.parts(now).items():
                seconds[part] += value
        seconds["predictions"] += sum(end - start for _, start, end in self.predictions)
        wall = now - self.begin - self.between_runs
        seconds["idle"] = max(0.0, slots * wall - sum(seconds.values()))
        return TimeSummary(wall, slots, seconds, self.driver, self.between_runs)
