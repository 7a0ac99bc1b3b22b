"""What a person watching the grid sees: one line per trial event, a heartbeat, a summary table."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable

from orchestrator.search.plan import short_value, render_table

TERMINAL = ("FINISHED", "KILLED", "FAILED")


class Progress:
    """Plain lines (they read the same in a terminal, a log file and CI)."""

    def __init__(self, total: int, metric: str, epochs: int, heartbeat_s: float = 30.0, stream=sys.stdout):
        self.total, self.metric, self.epochs, self.heartbeat_s, self.stream = total, metric, epochs, heartbeat_s, stream
        self.start = self.last_line = time.monotonic()
        self.counts: dict[str, int] = {}

    def _emit(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        done = sum(self.counts.get(s, 0) for s in TERMINAL)
        print(f"[{elapsed // 60:3d}m{elapsed % 60:02d}s {done:>3}/{self.total}] {text}", file=self.stream, flush=True)
        self.last_line = time.monotonic()

    def trial_started(self, record) -> None:
        again = f" again after epoch {record.epochs} (from its checkpoint)" if record.epochs else ""
        self._emit(f"{record.planned.key} {record.planned.config.model.name}: started{again}")

    def trial_result(self, record, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        self._emit(f"{record.planned.key} {record.planned.config.model.name}: epoch {record.epochs}/{self.epochs} "
                   f"{self.metric}={value:.4f} train_loss={metrics.get('train_loss', float('nan')):.3f} "
                   f"({metrics.get('epoch_time_s', 0):.1f}s, {metrics.get('images_per_s', 0):.0f} img/s)")

    def trial_retried(self, record, epoch: int) -> None:
        self._emit(f"{record.planned.key}: training failed; retry {record.retries}/{record.planned.config.resources.max_failures}"
                   f" continues from the checkpoint of epoch {epoch}")

    def trial_ended(self, record) -> None:
        self._emit(f"{record.planned.key}: {'completed' if record.status == 'FINISHED' else 'stopped early by the scheduler'}"
                   f" after {record.epochs} epoch(s); predicting OOF + test from the best checkpoint")

    def trial_closed(self, record) -> None:
        self.counts[record.status] = self.counts.get(record.status, 0) + 1
        detail = f": {record.error.strip().splitlines()[-1][:200]}" if record.error else ""
        self._emit(f"{record.planned.key}: {record.status}{detail}")

    def tick(self, records: Iterable[Any]) -> None:
        if time.monotonic() - self.last_line < self.heartbeat_s:
            return
        states = [r.status for r in records]
        self._emit(" | ".join(f"{s.lower()} {states.count(s)}" for s in ("RUNNING", "PAUSED", "PENDING") + TERMINAL if states.count(s)))


def summary_rows(records: Iterable[Any], metric: str) -> tuple[list[str], list[list[str]]]:
    records = list(records)
    axes = sorted({path for r in records for path in r.planned.searched})
    header = ["config_id", "model", "fold", "status", "epochs", f"best {metric}"] + axes
    ordered = sorted(records, key=lambda r: (r.planned.config.config_id, r.planned.config.fold))
    rows = [[r.planned.config.config_id, r.planned.config.model.name, str(r.planned.config.fold),
             r.status + (" (reused)" if r.reused else ""), str(r.epochs),
             "-" if r.best is None else f"{r.best:.4f}"] + [short_value(r.planned.searched.get(a)) for a in axes] for r in ordered]
    return header, rows


def summary_table(records: Iterable[Any], metric: str) -> str:
    return render_table(*summary_rows(records, metric))
