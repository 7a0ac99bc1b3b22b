"""Pseudo-labels: a finished ensemble's confident test predictions as extra training rows of a new round.

The rows get fold TRAIN_ONLY, so they train every fold and validate none: a round's
OOF scores are on the same labelled rows as its teacher's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.data.folds import TRAIN_ONLY
from orchestrator.errors import InputError


def select(probs: pd.DataFrame, threshold: float | None, top_fraction: float | None) -> pd.DataFrame:
    """The confident rows of (row_id, ..., prob_*): row_id, target (the top class), confidence.

    threshold: rows whose top probability is at least it; top_fraction: per predicted
    class, the most confident ceil(fraction x its rows) (every class keeps some rows).
    """
    p = probs.filter(like="prob_").to_numpy(np.float64)
    out = pd.DataFrame({"row_id": probs["row_id"].to_numpy(), "target": p.argmax(1), "confidence": p.max(1)})
    if threshold is not None:
        return out[out["confidence"] >= threshold].reset_index(drop=True)
    ranked = out.sort_values("confidence", ascending=False, kind="stable")
    by_class = ranked.groupby("target")["target"]
    keep = ranked[by_class.cumcount() < np.ceil(top_fraction * by_class.transform("size"))]
    return keep.sort_values("row_id").reset_index(drop=True)


def with_pseudo(train: pd.DataFrame, test: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """`train` plus the chosen test rows (labelled, fold TRAIN_ONLY, row ids after the last train row)."""
    rows = test.set_index("row_id").reindex(chosen["row_id"])
    missing = chosen["row_id"][rows["image_path"].isna().to_numpy()].tolist()
    if missing:
        raise InputError(f"pseudo.teacher: its test rows {missing[:5]} are not in this grid's test set; "
                         f"give an ensemble run of this grid (same data.root)")
    extra = pd.DataFrame({"row_id": train["row_id"].max() + 1 + np.arange(len(chosen)),
                          "image_path": rows["image_path"].to_numpy(), "rel_path": rows["rel_path"].to_numpy(),
                          "target": chosen["target"].to_numpy(), "group": [f"pseudo-{r}" for r in chosen["row_id"]],
                          "fold": TRAIN_ONLY})
    return pd.concat([train, extra[[c for c in train.columns if c in extra.columns]]], ignore_index=True)
