"""Figures logged to MLflow (headless matplotlib)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


READABLE_MATRIX = 30  # classes up to which a confusion matrix can carry its names; past it, the top confused pairs


def confusion_figure(targets: np.ndarray, predicted: np.ndarray, classes: list[str], pairs: pd.DataFrame, title: str):
    """Row-normalised confusion matrix labelled with class names, or with more classes than a matrix can
    name, a bar chart of the most confused (true -> predicted) pairs (`insight.confused_pairs`)."""
    if len(classes) > READABLE_MATRIX:
        return pairs_figure(pairs, title)
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    labels = np.arange(len(classes))
    matrix = confusion_matrix(targets, predicted, labels=labels, normalize="true")
    size = min(14, 4 + 0.35 * len(labels))
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    names = [_short(c) for c in classes]
    axis.set_xticks(labels, names, rotation=90, fontsize=8)
    axis.set_yticks(labels, names, fontsize=8)
    if len(labels) <= 12:
        for i in labels:
            for j in labels:
                if matrix[i, j] >= 0.005:
                    axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                              color="w" if matrix[i, j] > 0.5 else "k")
    axis.set(xlabel="predicted", ylabel="true", title=f"{title}: recall per class {np.trace(matrix) / len(labels):.3f}")
    figure.tight_layout()
    plt.close(figure)
    return figure


def pairs_figure(pairs: pd.DataFrame, title: str):
    """Horizontal bars: how many rows of each true class went to the predicted one, most frequent on top."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 1.5 + 0.32 * max(1, len(pairs))))
    names = [f"{_short(t)} -> {_short(p)}" for t, p in zip(pairs["true"], pairs["predicted"])]
    axis.barh(range(len(pairs)), pairs["count"], color="tab:red")
    for y, (count, share) in enumerate(zip(pairs["count"], pairs["share_of_true"])):
        axis.text(count, y, f" {count} ({share:.0%} of the true class)", va="center", fontsize=8)
    axis.set_yticks(range(len(pairs)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set(xlabel="OOF rows", title=f"{title}: most confused pairs (true -> predicted)")
    axis.margins(x=0.3)
    figure.tight_layout()
    plt.close(figure)
    return figure


def gallery_figure(images: list[np.ndarray], captions: list[str], title: str, columns: int = 4):
    """Images in a grid, each with its caption (true, predicted, confidence)."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.1 * rows), squeeze=False, layout="constrained")
    for axis in axes.ravel():
        axis.axis("off")
    for axis, image, caption in zip(axes.ravel(), images, captions):
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        axis.set_title(caption, fontsize=8)
    figure.suptitle(title, fontsize=10)
    plt.close(figure)
    return figure


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


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
    """One row per trial: its start-up, each epoch and its checkpoint, its prediction task, on the grid's clock
    (a TimeAccount)."""
    plt = _pyplot()
    keys = list(dict.fromkeys([s.key for s in account.stretches] + [k for k, _, _ in account.predictions]))
    row = {key: i for i, key in enumerate(keys)}
    figure, axis = plt.subplots(figsize=(10, 1.2 + 0.3 * len(keys)))
    colors = {"start-up": "0.7", "epoch": "tab:green", "checkpoint": "tab:orange", "prediction": "tab:blue"}
    for stretch in account.stretches:
        y, t0 = row[stretch.key], account.begin
        first = stretch.reports[0][0] - sum(stretch.reports[0][1:]) if stretch.reports else (stretch.end or account.clock())
        axis.barh(y, first - stretch.start, left=stretch.start - t0, color=colors["start-up"], height=0.6)
        for arrival, seconds, held, predicted in stretch.reports:
            begin = arrival - predicted - held - seconds - t0
            axis.barh(y, seconds, left=begin, color=colors["epoch"], height=0.6, edgecolor="white", linewidth=0.5)
            for part, length, at in (("checkpoint", held, begin + seconds), ("prediction", predicted, begin + seconds + held)):
                if length > 0:
                    axis.barh(y, length, left=at, color=colors[part], height=0.6)
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
