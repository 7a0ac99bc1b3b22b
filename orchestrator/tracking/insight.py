"""Per-class results and mistakes from OOF predictions, readable at any class count (pure: no MLflow, no Ray).

Tables name classes, never indices: per-class precision / recall / F1 / support, the
worst classes, the most confused (true, predicted) pairs, and the most confident
mistakes (what the gallery shows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.render import render_table


def probabilities(oof: pd.DataFrame) -> np.ndarray:
    return oof.filter(like="prob_").to_numpy()


def outcomes(oof: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predicted classes) of an OOF frame."""
    return oof["target"].to_numpy(), probabilities(oof).argmax(1)


def per_class(targets: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class, in class order: precision, recall, F1, support, and what it is most often mistaken for."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, labels=labels, zero_division=0)
    pairs = _mistake_counts(targets, predicted)  # sparse: a 10,000-class matrix would not fit
    top = pairs.sort_values("count", ascending=False, kind="stable").drop_duplicates("true")
    confused = [""] * len(classes)
    for true, wrong in zip(top["true"], top["predicted"]):
        confused[true] = classes[wrong]
    return pd.DataFrame({"class_index": labels, "class_name": classes, "precision": precision.round(4),
                         "recall": recall.round(4), "f1": f1.round(4), "support": support,
                         "predicted": np.bincount(predicted, minlength=len(classes)), "most_confused_with": confused})


def confused_pairs(targets: np.ndarray, predicted: np.ndarray, classes: list[str], top: int) -> pd.DataFrame:
    """The `top` most frequent (true, predicted) mistakes, named, with their share of the true class's rows."""
    pairs = _mistake_counts(targets, predicted).head(top)
    support = np.bincount(targets, minlength=len(classes))
    return pd.DataFrame({"true": [classes[t] for t in pairs["true"]], "predicted": [classes[p] for p in pairs["predicted"]],
                         "count": pairs["count"].to_numpy(), "share_of_true": (pairs["count"] / support[pairs["true"]]).round(4)})


def _mistake_counts(targets: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """(true, predicted, count) of every mistake pair that occurs, most frequent first."""
    wrong = targets != predicted
    frame = pd.DataFrame({"true": targets[wrong], "predicted": predicted[wrong]})
    return frame.value_counts(sort=True).reset_index()


def worst_mistakes(oof: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` wrong OOF predictions made with the highest confidence: row_id, fold, target, predicted, confidence."""
    probs = probabilities(oof)
    predicted, confidence = probs.argmax(1), probs.max(1)
    frame = pd.DataFrame({"row_id": oof["row_id"].to_numpy(), "fold": oof["fold"].to_numpy() if "fold" in oof else -1,
                          "target": oof["target"].to_numpy(), "predicted": predicted, "confidence": confidence})
    wrong = frame[frame["target"] != frame["predicted"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(top).reset_index(drop=True)


def mistakes_text(title: str, table: pd.DataFrame, pairs: pd.DataFrame, worst: int = 15) -> str:
    """A plain-text page: overall figures, the `worst` classes by F1, the most confused pairs."""
    weak = table.sort_values(["f1", "support"], ascending=[True, False], kind="stable").head(worst)
    accuracy = (table["recall"] * table["support"]).sum() / max(1, table["support"].sum())
    lines = [title, (f"{len(table)} classes, {int(table['support'].sum())} rows: accuracy {accuracy:.4f}, "
                    f"macro F1 {table['f1'].mean():.4f}"), "", f"worst {len(weak)} classes by F1:"]
    lines.append(render_table(["class", "f1", "precision", "recall", "support", "most confused with"],
                              [[r.class_name, f"{r.f1:.3f}", f"{r.precision:.3f}", f"{r.recall:.3f}", str(r.support),
                                r.most_confused_with] for r in weak.itertuples()]))
    lines += ["", f"most confused pairs (true -> predicted), top {len(pairs)}:"]
    lines.append(render_table(["true", "predicted", "count", "share of true"],
                              [[r.true, r.predicted, str(r.count), f"{r.share_of_true:.1%}"] for r in pairs.itertuples()])
                 if len(pairs) else "(no mistakes)")
    return "\n".join(lines) + "\n"
