"""Figures logged to MLflow (headless matplotlib)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(oof: pd.DataFrame):
    """Row-normalised confusion matrix of one fold's out-of-fold predictions."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    probs = oof.filter(like="prob_").to_numpy()
    labels = np.arange(probs.shape[1])
    matrix = confusion_matrix(oof["target"], probs.argmax(1), labels=labels, normalize="true")
    size = min(12, 3 + 0.35 * len(labels))
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    axis.set(xlabel="predicted", ylabel="true", title=f"OOF confusion (acc {np.trace(matrix) / len(labels):.3f} mean per class)")
    if len(labels) <= 30:
        axis.set_xticks(labels)
        axis.set_yticks(labels)
    figure.tight_layout()
    plt.close(figure)
    return figure


def correlation_figure(names: list[str], correlation: np.ndarray):
    """Heatmap of the correlation between ensemble members' OOF probabilities."""
    plt = _pyplot()
    size = 3 + 0.5 * len(names)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(correlation, cmap="viridis", vmin=min(0.0, correlation.min()), vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90)
    axis.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            axis.text(j, i, f"{correlation[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    figure.colorbar(image)
    axis.set_title("member OOF correlation")
    figure.tight_layout()
    plt.close(figure)
    return figure
