"""A competition's submission shape, read once from its test CSV: which columns, in which order, holding what.

The csv source reads it from `data.test_csv` (usually `sample_submission.csv`): when the grid loads its data
(a sample that cannot be filled fails the grid before any trial), when the ensemble job writes the submission
(the test CSV as it is then, checked to hold the rows the trials predicted), and the served model carries it in
its metadata, so `python -m orchestrator.predict ... --format submission` writes the same file for new rows.
Rows keep the test CSV's order (a test table's row_id is its line in that CSV).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Values = Literal["labels", "probabilities", "positive"]


@dataclass(frozen=True)
class SubmissionFormat:
    id_column: str  # the test CSV's id column: each row's id, as the CSV spells it
    columns: list[str]  # the submission's columns, in order
    values: Values  # labels: class names in label_column; probabilities: a column per class; positive: P(2nd class)
    label_column: str | None = None  # where labels (or the positive class's probability) go
    int_labels: bool = False  # the training labels were integers: the submission writes integers
    test_csv: str = "sample_submission.csv"  # where predict finds the rows of a competition root ...
    test_images: str = "test_images"  # ... and their images
    task: str = "multiclass"  # multilabel: labels are each row's called tags, joined by `separator`
    separator: str = " "

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> SubmissionFormat | None:
        return None if raw is None else cls(**raw)

    def class_columns(self, classes: list[str]) -> list[str]:
        """The columns that hold a class's probability (values: probabilities), in the submission's order."""
        names = set(classes)
        return [c for c in self.columns if c in names] if self.values == "probabilities" else []

    def write(self, ids: np.ndarray, probs: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
        """The submission: one row per id (in the given order), `self.columns` in order.

        probs: (rows, classes) blended probabilities; predicted: each row's class index (the decision, which
        may differ from the argmax of probs when macro-F1 offsets are kept), or for a multilabel task each row's
        called tags (rows, tags) bool.
        """
        out = pd.DataFrame({self.id_column: np.asarray(ids, dtype=object)})
        if self.values == "labels" and self.task == "multilabel":
            names = np.asarray(classes, dtype=object)
            out[self.label_column] = [self.separator.join(names[np.flatnonzero(row)]) for row in np.asarray(predicted)]
        elif self.values == "labels":
            names = np.asarray(classes, dtype=object)[np.asarray(predicted, dtype=int)]
            out[self.label_column] = names.astype(np.int64) if self.int_labels else names
        elif self.values == "positive":
            out[self.label_column] = probs[:, 1].astype(np.float64)
        else:
            columns = self.class_columns(classes)
            chosen = probs[:, [classes.index(c) for c in columns]].astype(np.float64)
            if self.task == "multiclass":  # rows sum to 1 over the submitted columns (tags are each their own)
                chosen /= np.clip(chosen.sum(1, keepdims=True), 1e-12, None)
            out = pd.concat([out, pd.DataFrame(chosen, columns=columns)], axis=1)
        return out[self.columns]


def detect(test: pd.DataFrame, test_csv: str, id_column: str, label_column: str, classes: list[str],
           submit: str) -> tuple[SubmissionFormat, list[str]]:
    """The format `test` (the test CSV, as read) asks for, and the notes to print (columns left out).

    Raises ValueError with the fix when the CSV's columns and `submit` disagree.
    """
    columns = [str(c) for c in test.columns]
    class_columns = [c for c in columns if c in set(classes)]
    complete = len(class_columns) == len(classes)
    if class_columns and not complete and submit != "labels":
        missing = [c for c in classes if c not in set(class_columns)]
        raise ValueError(f"has a column for {len(class_columns)} of the {len(classes)} classes (none for "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): a probability submission "
                         f"needs one per training class; set data.submit: labels to write class names instead")
    if submit == "probabilities" and not complete:
        if len(classes) == 2 and label_column in columns:
            kept = [c for c in columns if c in (id_column, label_column)]
            return SubmissionFormat(id_column, kept, "positive", label_column), _left_out(columns, kept)
        raise ValueError(f"data.submit: probabilities needs a column per class ({', '.join(classes[:5])}"
                         f"{' ...' if len(classes) > 5 else ''}), or with two classes the label column "
                         f"{label_column!r}; it has {', '.join(columns)}")
    if complete and submit != "labels":
        kept = [c for c in columns if c == id_column or c in set(classes)]
        return SubmissionFormat(id_column, kept, "probabilities"), _left_out(columns, kept)
    kept = [c for c in columns if c in (id_column, label_column)]
    if label_column not in kept:
        kept.append(label_column)  # a test CSV of ids alone: the label column is added
    return SubmissionFormat(id_column, kept, "labels", label_column), _left_out(columns, kept)


def _left_out(columns: list[str], kept: list[str]) -> list[str]:
    dropped = [c for c in columns if c not in kept]
    return [f"not in the submission: column(s) {', '.join(dropped)} (neither the id, the label nor a class)"] if dropped else []
