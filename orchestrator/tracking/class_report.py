"""One set of OOF predictions as people read them: per-class table, the mistakes page, the confusion figure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.layout import RunFiles
from orchestrator.tracking import insight, plots
from orchestrator.tracking.mlflow_store import Tracker


@dataclass(frozen=True)
class ClassReport:
    """Per-class table, the mistakes page and the confusion figure of one set of OOF predictions."""

    table: pd.DataFrame
    page: str
    figure: Any

    @classmethod
    def of(cls, targets: np.ndarray, predicted: np.ndarray, classes: list[str], top: int, title: str,
           short_title: str) -> ClassReport:
        table = insight.per_class(targets, predicted, classes)
        pairs = insight.confused_pairs(targets, predicted, classes, top)
        return cls(table, insight.mistakes_text(title, table, pairs),
                   plots.confusion_figure(targets, predicted, classes, pairs, short_title))

    def log(self, tracker: Tracker, run_id: str) -> None:
        tracker.log_table(run_id, self.table, RunFiles.PER_CLASS)
        tracker.log_text(run_id, self.page, RunFiles.MISTAKES)
        tracker.log_figure(run_id, self.figure, RunFiles.CONFIG_CONFUSION)
