"""A multilabel task's OOF predictions as people read them: the per-tag table, the tags most often missed and
most often added, a per-tag figure, and the images with the most wrong tags (pure but for `log`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.layout import RunFiles
from orchestrator.render import render_table


def per_tag(hot: np.ndarray, called: np.ndarray, classes: list[str], thresholds: np.ndarray) -> pd.DataFrame:
    """One row per tag: precision, recall, F1, support (images that have it), called, missed (false negatives),
    added (false positives), the threshold it was called at."""
    truth, called = hot > 0.5, np.asarray(called, dtype=bool)
    tp, fp, fn = (truth & called).sum(0), (~truth & called).sum(0), (truth & ~called).sum(0)
    precision = np.divide(tp, tp + fp, out=np.zeros(len(classes)), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(len(classes)), where=tp + fn > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(classes)), where=2 * tp + fp + fn > 0)
    return pd.DataFrame({"tag": classes, "precision": precision.round(4), "recall": recall.round(4), "f1": f1.round(4),
                         "support": truth.sum(0), "called": called.sum(0), "missed": fn, "added": fp,
                         "threshold": np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),)).round(3)})


def tags_text(title: str, table: pd.DataFrame, rows: int, top: int = 10) -> str:
    """A plain-text page: the overall figures, the tags most often missed, the tags most often added."""
    lines = [title, f"{len(table)} tags, {rows} images: macro F1 over tags {table['f1'].mean():.4f}", ""]
    for column, what in (("missed", "missed (true, not called)"), ("added", "added (called, not true)")):
        worst = table.sort_values([column, "support"], ascending=[False, False], kind="stable").head(top)
        lines += [f"tags most often {what}:", render_table(
            ["tag", column, "support", "precision", "recall", "f1", "threshold"],
            [[r.tag, str(getattr(r, column)), str(r.support), f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}",
              f"{r.threshold:.2f}"] for r in worst.itertuples()]), ""]
    return "\n".join(lines)


def wrong_rows(row_ids: np.ndarray, folds: np.ndarray, hot: np.ndarray, probs: np.ndarray, called: np.ndarray,
               classes: list[str], top: int) -> pd.DataFrame:
    """The `top` images with the most wrong tags (ties: the most confident mistakes first): row_id, fold, missed,
    extra (tag names), errors."""
    truth, called = hot > 0.5, np.asarray(called, dtype=bool)
    missed, extra = truth & ~called, ~truth & called
    errors = missed.sum(1) + extra.sum(1)
    confidence = np.where(missed, 1 - probs, 0).sum(1) + np.where(extra, probs, 0).sum(1)
    order = np.lexsort((-confidence, -errors))[:top]
    order = order[errors[order] > 0]
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame({"row_id": row_ids[order], "fold": folds[order], "errors": errors[order],
                         "missed": [", ".join(names[missed[i]]) for i in order],
                         "extra": [", ".join(names[extra[i]]) for i in order]})


def tag_figure(table: pd.DataFrame, title: str, most: int = 40) -> Any:
    """Precision, recall and F1 per tag as bars (the `most` most frequent tags)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.sort_values("support", ascending=False, kind="stable").head(most)
    x = np.arange(len(shown))
    figure, axes = plt.subplots(figsize=(max(6, 0.45 * len(shown) + 2), 4))
    for offset, column in zip((-0.27, 0, 0.27), ("precision", "recall", "f1")):
        axes.bar(x + offset, shown[column], width=0.27, label=column)
    axes.set_xticks(x, [f"{t} ({s})" for t, s in zip(shown["tag"], shown["support"])], rotation=60, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


@dataclass(frozen=True)
class TagReport:
    """The per-tag table, its page and its figure (logged where a multiclass run has its per-class report)."""

    table: pd.DataFrame
    page: str
    figure: Any

    @classmethod
    def of(cls, hot: np.ndarray, probs: np.ndarray, classes: list[str], thresholds: np.ndarray | float, title: str,
           short_title: str) -> TagReport:
        called = probs >= np.asarray(thresholds)
        table = per_tag(hot, called, classes, np.asarray(thresholds))
        return cls(table, tags_text(title, table, len(hot)), tag_figure(table, short_title))

    def log(self, tracker, run_id: str) -> None:
        tracker.log_table(run_id, self.table, RunFiles.PER_CLASS)
        tracker.log_text(run_id, self.page, RunFiles.MISTAKES)
        tracker.log_figure(run_id, self.figure, RunFiles.CONFIG_CONFUSION)
