"""How member probabilities combine: the ensemble job fits weights for it, the served model applies it.

Soft methods (mean, hill_climb, rank) take the weighted mean of the members'
probabilities; `vote` counts each member's top class with its weight (hard majority
voting), the soft mean breaking ties. Per-class logit offsets (macro-F1 decision
tuning, ensemble/decision.py) shift the blended distribution before its argmax; a multilabel blend's tags are
called by per-tag thresholds (`decide`, tuned by ensemble/thresholds.py).
"""

from __future__ import annotations

import numpy as np

TIE_BREAK = 1e-6  # how much of the soft mean a vote carries: enough to break ties, never to outvote


def blend(members: list[np.ndarray], weights: np.ndarray, method: str = "mean") -> np.ndarray:
    """The members' (rows, classes) arrays combined with `weights` (need not sum to 1); rows sum to 1."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    soft = np.tensordot(weights, np.stack(members), axes=1)
    if method != "vote":
        return soft
    votes = sum(w * np.eye(soft.shape[1])[m.argmax(1)] for w, m in zip(weights, members) if w > 0)
    shares = votes + TIE_BREAK * soft
    return shares / shares.sum(1, keepdims=True)


def decide(probs: np.ndarray, thresholds: np.ndarray | float, at_least_one: bool = True) -> np.ndarray:
    """A multilabel blend's tags called (rows, tags) bool: each at or over its threshold; with `at_least_one`, a row
    with none gets its most probable tag."""
    called = probs >= np.asarray(thresholds)
    if at_least_one:
        empty = ~called.any(1)
        called[np.flatnonzero(empty), probs[empty].argmax(1)] = True
    return called


def shift(probs: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """softmax(log p + offsets): the distribution whose argmax is the tuned decision (offsets None: `probs` as is)."""
    if offsets is None:
        return probs
    logits = np.log(np.clip(probs, 1e-12, None)) + np.asarray(offsets)[None, :]
    logits -= logits.max(1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(1, keepdims=True)
