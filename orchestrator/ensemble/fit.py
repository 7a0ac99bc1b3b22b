"""The ensemble as a pure computation: members -> the chosen ones -> weights -> decision offsets.

Nothing here reads or writes MLflow or files, so a notebook can call it on members it loaded:

    from orchestrator.ensemble.members import load_members
    members, _ = load_members(Tracker(uri, grid_name, create=False), folds=[0, 1, 2])
    result = fit_members(members, "val_acc", grid.ensemble)
    result.weights, result.fit.score, result.test_probabilities()

`python -m orchestrator.ensemble` (__main__.py) adds the printing, the MLflow run, the submission and
the published model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.blend import blend, shift
from orchestrator.config import EnsembleConfig
from orchestrator.data.tables import multi_hot
from orchestrator.ensemble.decision import tune
from orchestrator.ensemble.members import Member
from orchestrator.ensemble.thresholds import KINDS
from orchestrator.ensemble.thresholds import tune as tune_thresholds
from orchestrator.ensemble.weights import Fit, fit_ensemble, inputs_for, scorer
from orchestrator.metrics import METRICS

THRESHOLD_METRICS = {"val_f2", "val_f1_samples", "val_f1_micro", "val_f1_macro"}  # scores of called tags

@dataclass(frozen=True)
class EnsembleResult:
    chosen: list[Member]  # the top_k members by OOF score, best first
    scores: list[float]  # each chosen member's OOF score
    oofs: list[np.ndarray]  # each chosen member's OOF probabilities on `rows`
    fit: Fit  # method, weights, the blended OOF, its in-sample and cross-validated scores, every method tried
    rows: np.ndarray  # the OOF row ids every member predicted, in the order of y
    y: np.ndarray
    folds: np.ndarray
    tuning: Any = None  # decision.Tuning when macro-F1 offsets were tried, else None
    thresholds: Any = None  # a multilabel task's: thresholds.Thresholds (which tags are called)

    @property
    def multilabel(self) -> bool:
        return self.thresholds is not None

    @property
    def weights(self) -> np.ndarray:
        return self.fit.weights

    @property
    def offsets(self) -> np.ndarray | None:
        return None if self.tuning is None else self.tuning.offsets

    def test_predictions(self) -> np.ndarray:
        """The predicted class of every test row, as the submission has it (None members' tests: ValueError); a
        multilabel task's called tags (rows, tags) bool."""
        tests = [m.test_probs for m in self.chosen]
        if self.multilabel:  # thresholds were tuned on probabilities: the served blend's
            return self.thresholds.decide(self.test_probabilities())
        return shift(blend(inputs_for(self.fit.method, tests), self.weights, self.fit.method), self.offsets).argmax(1)

    def test_probabilities(self) -> np.ndarray:
        """What the served model gives for the test rows (see served_probabilities)."""
        return served_probabilities([m.test_probs for m in self.chosen], self.fit, self.offsets)


def fit_members(members: list[Member], metric: str, cfg: EnsembleConfig) -> EnsembleResult:
    """Choose the `cfg.top_k` best members by OOF `metric`, fit their weights (`cfg.method`) on the OOF rows they
    share, cross-validated over those rows' folds (weights.fit_ensemble), and macro-F1 offsets when `cfg.f1_offsets`
    asks (auto: when the metric is val_f1)."""
    score = scorer(metric)
    rows = common_rows(members)
    oof_rows = members[0].oof.set_index("row_id").loc[rows]
    oofs = [m.oof.set_index("row_id").loc[rows].filter(like="prob_").to_numpy(np.float64) for m in members]
    tags = "tags" in oof_rows.columns
    y = multi_hot(oof_rows["tags"], oofs[0].shape[1]) if tags else oof_rows["target"].to_numpy()
    folds = oof_rows["fold"].to_numpy()
    scores = [score(p, y) for p in oofs]
    order = sorted(range(len(members)), key=lambda i: -scores[i])[: cfg.top_k]
    fit = fit_ensemble(cfg.method, [oofs[i] for i in order], y, score, cfg.iterations, folds,
                       ranks=not (METRICS[metric].calibrated or tags), votes=not tags)  # tags: scored at 0.5
    if tags:  # the tags to call: thresholds tuned for the metric (a threshold-free one: per-image F1)
        decided_by = metric if metric in THRESHOLD_METRICS else "val_f1_samples"
        thresholds = tune_thresholds(served_probabilities([oofs[i] for i in order], fit, None), y, folds,
                                     scorer(decided_by), KINDS if cfg.thresholds == "auto" else (cfg.thresholds,),
                                     cfg.at_least_one_tag, decided_by)
        return EnsembleResult([members[i] for i in order], [scores[i] for i in order], [oofs[i] for i in order], fit,
                              rows, y, folds, thresholds=thresholds)
    on = cfg.f1_offsets == "on" or (cfg.f1_offsets == "auto" and metric == "val_f1")
    return EnsembleResult([members[i] for i in order], [scores[i] for i in order], [oofs[i] for i in order], fit, rows,
                          y, folds, tune(fit.oof, y, folds) if on else None)


def served_probabilities(probs: list[np.ndarray], fit: Fit, offsets) -> np.ndarray:
    """What the served model gives for these members' probabilities: their blend (rank's weights on probabilities,
    since one image has no ranks) shifted by the offsets (not rank's: they were fitted on ranks)."""
    if fit.method == "rank":
        return blend(probs, fit.weights)
    return shift(blend(probs, fit.weights, fit.method), offsets)


def common_rows(members: list[Member]) -> np.ndarray:
    """The OOF row ids every member predicted, sorted."""
    rows = set(members[0].oof["row_id"])
    for member in members[1:]:
        rows &= set(member.oof["row_id"])
    return np.array(sorted(rows))
