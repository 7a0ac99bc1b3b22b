"""The multilabel task's pure parts: tags from the CSV, folds by iterative stratification, thresholds that keep a
gain only when it holds under cross-validation, the config's refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import DataConfig, FoldsConfig, parse_grid
from orchestrator.data.csv_source import load_csv
from orchestrator.data.folds import assign_folds
from orchestrator.data.tables import encode_tags, multi_hot
from orchestrator.ensemble.thresholds import tune
from orchestrator.errors import InputError
from orchestrator.metrics import METRICS


def tag_table(rows: int, tags: int, seed: int, groups: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hot = rng.random((rows, tags)) < np.linspace(0.05, 0.5, tags)  # rare tags to common ones
    hot[np.arange(tags) % rows, np.arange(tags)] = True  # every tag somewhere
    group = [str(i % groups) for i in range(rows)] if groups else None
    return pd.DataFrame({"target": -1, "tags": encode_tags(hot), "group": group})


@pytest.mark.parametrize("kind,groups", [("stratified", None), ("stratified_group", 60)])
def test_every_tag_lands_in_every_fold_it_can(kind, groups):
    train = tag_table(240, 8, 0, groups)
    folds = assign_folds(train, FoldsConfig(kind=kind, n_splits=4), seed=3)
    hot = multi_hot(train["tags"], 8)
    assert set(folds) == {0, 1, 2, 3}
    unit = train["group"] if groups else pd.Series(np.arange(len(train)))
    for tag in range(8):
        holders = unit[hot[:, tag] > 0].nunique()  # rows (groups) that have the tag
        in_folds = len(set(folds[hot[:, tag] > 0]))
        assert in_folds == min(4, holders), f"tag {tag}: {holders} holders in {in_folds} folds"
    if groups:
        assert train.assign(fold=folds).groupby("group")["fold"].nunique().max() == 1  # a group in one fold
    again = assign_folds(train, FoldsConfig(kind=kind, n_splits=4), seed=3)
    assert (again == folds).all()  # the seed decides


def score(name: str):
    return METRICS[name].score


def test_per_tag_thresholds_are_kept_when_tags_are_calibrated_apart():
    rng = np.random.default_rng(0)
    hot = (rng.random((600, 4)) < 0.3).astype(float)
    # tags 0 and 2: negatives reach 0.55, positives above; tags 1 and 3: positives score 0.2-0.4, negatives below
    low = np.array([0.0, 0.0, 0.0, 0.0])
    negative_top, positive = np.array([0.55, 0.22, 0.55, 0.22]), np.array([[0.6, 1.0], [0.2, 0.4], [0.6, 1.0], [0.2, 0.4]])
    noise = rng.random(hot.shape)
    probs = np.where(hot > 0, positive[:, 0] + noise * (positive[:, 1] - positive[:, 0]), low + noise * negative_top)
    folds = np.arange(600) % 3
    kept = tune(probs, hot, folds, score("val_f1_samples"))
    assert kept.kind == "per_tag" and kept.cv["per_tag"] > kept.cv["global"] > kept.cv["fixed"]
    assert kept.values[1] < kept.values[0] and kept.values[3] < kept.values[2]
    assert kept.decide(probs).any(1).all()  # at least one tag per image


def test_thresholds_fitted_to_noise_give_way_to_the_simpler_kind():
    rng = np.random.default_rng(1)
    hot = (rng.random((45, 12)) < 0.5).astype(float)
    probs = rng.random(hot.shape)  # no signal: whatever per-tag thresholds gain on their rows is noise
    kept = tune(probs, hot, np.arange(45) % 3, score("val_f1_macro"))
    assert kept.fitted >= max(kept.cv.values())  # in-sample looks better ...
    assert kept.kind != "per_tag" or kept.cv["per_tag"] > max(kept.cv["global"], kept.cv["fixed"])  # ... kept on CV only
    assert kept.kind == max(kept.cv, key=kept.cv.get)
    one_fold = tune(probs, hot, np.zeros(45, int), score("val_f1_macro"))
    assert one_fold.kind == "fixed" and (one_fold.values == 0.5).all()  # nothing to hold out: 0.5


def test_tags_from_the_label_column_and_into_the_submission(tiny_competition):
    frame = pd.read_csv(tiny_competition / "train.csv")
    frame["label"] = ["ant|bee", "bee", "", "cat|ant", "cat", "bee|cat|ant"]  # an image may have no tag
    frame.to_csv(tiny_competition / "train.csv", index=False)
    (tiny_competition / "sample_submission.csv").write_text("image_id,label\nt3,x\nt1,x\n007,x\nt2,x\n")
    tables = load_csv(DataConfig(source="csv", root=tiny_competition, task="multilabel", label_separator="|"))
    assert tables.classes == ["ant", "bee", "cat"] and tables.task == "multilabel"
    assert tables.train["tags"].tolist() == ["0 1", "1", "", "0 2", "2", "0 1 2"]
    called = np.array([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])
    written = tables.submission.write(tables.test["rel_path"].to_numpy(), called * 0.9, called, tables.classes)
    assert written["label"].tolist() == ["ant|cat", "bee", "ant|bee|cat", "cat"]


def grid(**changes) -> dict:
    base = {"name": "tags", "data": {"source": "csv", "root": ".", "task": "multilabel"}, "models": [{"name": "test_resnet"}]}
    for key, value in changes.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def test_a_multilabel_grid_gets_its_defaults_and_refuses_what_it_cannot_use():
    parsed = parse_grid(grid())
    assert parsed.scheduler.metric == "val_f1_samples" and parsed.train.loss.name == "bce"
    refusals = [({"scheduler": {"metric": "val_acc"}}, "val_acc does not score a multilabel task"),
                ({"train": {"loss": {"name": "cross_entropy"}}}, "cross_entropy is not a multilabel loss; give one of bce"),
                ({"ensemble": {"method": "vote"}}, "vote counts each member's one class"),
                ({"pseudo": {"threshold": 0.9}}, "pseudo round labels test images with one confident class")]
    for change, message in refusals:
        with pytest.raises(InputError, match=message):
            parse_grid(grid(**change))
    with pytest.raises(InputError, match="asl is not a multiclass loss"):
        parse_grid({**grid(), "data": {"source": "csv", "root": "."}, "train": {"loss": {"name": "asl"}}})
