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


def timeline_figure(account):
    """One row per trial: its start-up, each epoch, its prediction task, on the grid's clock (a TimeAccount)."""
    plt = _pyplot()
    keys = list(dict.fromkeys([s.key for s in account.stretches] + [k for k, _, _ in account.predictions]))
    row = {key: i for i, key in enumerate(keys)}
    figure, axis = plt.subplots(figsize=(10, 1.2 + 0.3 * len(keys)))
    colors = {"start-up": "0.7", "epoch": "tab:green", "prediction": "tab:blue"}
    for stretch in account.stretches:
        y, t0 = row[stretch.key], account.begin
        first = stretch.reports[0][0] - stretch.reports[0][1] if stretch.reports else (stretch.end or account.clock())
        axis.barh(y, first - stretch.start, left=stretch.start - t0, color=colors["start-up"], height=0.6)
        for arrival, seconds in stretch.reports:
            axis.barh(y, seconds, left=arrival - seconds - t0, color=colors["epoch"], height=0.6, edgecolor="white", linewidth=0.5)
    for key, start, end in account.predictions:
        axis.barh(row[key], end - start, left=start - account.begin, color=colors["prediction"], height=0.6)
    axis.set_yticks(range(len(keys)), keys, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("seconds since the grid started")
    axis.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()], labels=list(colors), loc="lower right")
    axis.set_title("where each trial's time went")
    figure.tight_layout()
    plt.close(figure)
    return figure
