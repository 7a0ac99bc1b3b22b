"""What the commands print, the same to a terminal and to a log file, less the live redraws.

In a terminal a progress bar redraws itself (tqdm); written to a file or a pipe it becomes a start line, a line
a minute while it runs, and an end line, with no carriage returns. MLflow's INFO lines ("Creating initial MLflow
database tables", "Validating input example against model signature") are left out unless `--verbose`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

LINE_EVERY_S = 60.0  # a progress line in a log file at most this often


class LineProgress:
    """tqdm's face (update, close, a context manager) for a log file: whole lines only."""

    def __init__(self, total: int, desc: str, unit: str, file: TextIO, every_s: float = LINE_EVERY_S):
        self.total, self.desc, self.unit, self.file, self.every_s = total, desc, unit, file, every_s
        self.n, self.start = 0, time.monotonic()
        self.last = self.start
        self._say(f"{desc}: {total} {unit} ...")

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every_s and self.n < self.total:
            self._say(f"{self.desc}: {self.n}/{self.total} {self.unit} ({self._rate()})")

    def close(self) -> None:
        if self.n >= 0:
            self._say(f"{self.desc}: {self.n}/{self.total} {self.unit} in {time.monotonic() - self.start:.0f} s "
                      f"({self._rate()})")
            self.n = -1

    def _rate(self) -> str:
        return f"{self.n / max(time.monotonic() - self.start, 1e-9):.0f} {self.unit}/s"

    def _say(self, line: str) -> None:
        print(line, file=self.file, flush=True)
        self.last = time.monotonic()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: int, desc: str, unit: str, file: TextIO = sys.stderr, disable: bool = False, **tqdm_options):
    """A progress bar: tqdm in a terminal, whole lines (LineProgress) in a file or a pipe, nothing when `disable`."""
    if disable:
        return _Silent()
    if not file.isatty():
        return LineProgress(total, desc, unit, file)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=file, **tqdm_options)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def quiet_libraries(verbose: bool = False) -> None:
    """MLflow's INFO lines off (unless `verbose`): its level is read from the environment when it is first imported,
    and set on its logger for an MLflow already imported."""
    level = "INFO" if verbose else "WARNING"
    os.environ["MLFLOW_LOGGING_LEVEL"] = level
    logging.getLogger("mlflow").setLevel(level)
    logging.getLogger("alembic").setLevel(level)
