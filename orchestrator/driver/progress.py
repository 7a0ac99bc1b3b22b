"""What a person watching the grid sees: one line per trial event, a heartbeat, a summary table."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.protocol import EpochReport, TrialStatus
from orchestrator.render import render_table, short_value


class Progress:
    """One line per trial event (they read the same in a terminal, a log file and CI); in a terminal, also a
    live line under them: trials done / running / paused / pending, the best score so far, the time left.

    Out of a terminal a heartbeat line every `heartbeat_s` stands in for the live line. The time left is
    tqdm's estimate from the trials done so far (early stops make it pessimistic at first).
    """

    def __init__(self, total: int, metric: str, mode: str = "max", heartbeat_s: float = 30.0, stream=sys.stdout,
                 live: bool | None = None, behind: Callable[[], tuple[int, float] | None] | None = None):
        """`behind()`: (MLflow writes pending, since when) while tracking lags (TrackingWriter.behind), else None."""
        self.total, self.metric, self.mode, self.heartbeat_s, self.stream = total, metric, mode, heartbeat_s, stream
        self.behind, self.was_behind = behind or (lambda: None), False
        self.start = self.last_line = time.monotonic()
        self.done = 0
        self.best: float | None = None
        self.bar = None
        if stream.isatty() if live is None else live:
            from tqdm import tqdm

            # miniters=0: redraw on time alone (tqdm's own miniters would stop the ticks' redraws after a trial ends)
            self.bar = tqdm(total=total, file=stream, unit="trial", dynamic_ncols=True, mininterval=1.0, miniters=0,
                            bar_format="trials {n_fmt}/{total_fmt} |{bar:16}| {elapsed} elapsed, ~{remaining} left{postfix}")

    def _emit(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        line = f"[{elapsed // 60:3d}m{elapsed % 60:02d}s {self.done:>3}/{self.total}] {text}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
        self.last_line = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def trial_started(self, record) -> None:
        again = f" again after epoch {record.epochs} (from its checkpoint)" if record.epochs else ""
        self._emit(f"{record.key} {record.planned.config.model.name}: started{again}")

    def trial_result(self, record, report: EpochReport) -> None:
        """`epoch k/N`: N is the trial's own budget (train.epochs may be a search axis)."""
        score = getattr(report, self.metric)
        better = self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        if math.isfinite(score) and better:  # a NaN score would stick: every comparison with it is false
            self.best = score
        shown = f"{self.metric}={score:.4f} " if math.isfinite(score) else ""  # a refit has no validation rows
        self._emit(f"{record.key} {record.planned.config.model.name}: epoch {report.epoch}/{record.planned.config.train.epochs} "
                   f"{shown}train_loss={report.train_loss:.3f} ({report.epoch_time_s:.1f}s, {report.images_per_s:.0f} img/s)")

    def trial_retried(self, record, epoch: int) -> None:
        self._emit(f"{record.key}: training failed; retry {record.retries}/{record.planned.config.resources.max_failures}"
                   f" continues from the checkpoint of epoch {epoch}")

    def note(self, record, text: str) -> None:
        self._emit(f"{record.key}: {text}")

    def trial_ended(self, record) -> None:
        how = "completed" if record.status is TrialStatus.FINISHED else "stopped early by the scheduler"
        frames = "test" if record.planned.config.refit else "OOF + test"
        then = (f"its {frames} predictions are in" if record.predicted_itself
                else f"a task predicts {frames} from the best checkpoint once a worker is free")
        self._emit(f"{record.key}: {how} after {record.epochs} epoch(s); {then}")

    def trial_closed(self, record) -> None:
        self.done += record.status.terminal
        if self.bar is not None:
            self.bar.update(int(record.status.terminal))
        detail = f": {record.error.strip().splitlines()[-1][:200]}" if record.error else ""
        self._emit(f"{record.key}: {record.status}{detail}")

    def tick(self, records: Iterable[Any]) -> None:
        """Tune's every step: the live line's counts, or (no terminal) the heartbeat when nothing was said for a while;
        and whether tracking is behind (a line when it falls behind and when it catches up)."""
        states = [r.status for r in records if not r.reused]  # this run's trials (the bar counts them too)
        counts = " | ".join(f"{s.value.lower()} {states.count(s)}" for s in TrialStatus if states.count(s))
        lag = self.behind()
        if lag is not None:
            counts += f" | tracking behind: {lag[0]} MLflow write(s) since {time.strftime('%H:%M:%S', time.localtime(lag[1]))}"
            if not self.was_behind:
                self._emit(f"tracking: MLflow has not taken {lag[0]} write(s) since "
                           f"{time.strftime('%H:%M:%S', time.localtime(lag[1]))}; training goes on, the writes wait "
                           f"in the journal and follow in order when it answers")
        elif self.was_behind:
            self._emit("tracking: caught up, every write is in MLflow")
        self.was_behind = lag is not None
        if self.bar is not None:
            best = "" if self.best is None else f" | best {self.metric} {self.best:.4f}"
            self.bar.set_postfix_str(counts + best, refresh=False)
            self.bar.update(0)  # redraws at most once per mininterval
        elif time.monotonic() - self.last_line >= self.heartbeat_s:
            self._emit(counts)


def summary_rows(records: Iterable[Any], metric: str) -> tuple[list[str], list[list[str]]]:
    records = list(records)
    axes = sorted({path for r in records for path in r.planned.searched})
    header = ["config_id", "model", "fold", "status", "epochs", f"best {metric}", "wall_s", "cpu_hours", "gpu_hours"] + axes
    ordered = sorted(records, key=lambda r: (r.planned.config.config_id, r.planned.config.fold))
    rows = [[r.planned.config.config_id, r.planned.config.model.name, "refit" if r.planned.config.refit else str(r.planned.config.fold),
             f"{r.status}" + (" (reused)" if r.reused else ""), str(r.epochs),
             "-" if r.score is None else f"{r.score:.4f}", f"{r.cost.wall_s:.1f}", f"{r.cost.cpu_hours:.5f}",
             f"{r.cost.gpu_hours:.5f}"] + [short_value(r.planned.searched.get(a)) for a in axes] for r in ordered]
    return header, rows


def summary_table(records: Iterable[Any], metric: str) -> str:
    return render_table(*summary_rows(records, metric))
