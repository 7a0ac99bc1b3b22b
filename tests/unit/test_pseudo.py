"""Pseudo-labels: which test rows a teacher's predictions label, and that they train every fold and validate none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import PseudoConfig
from orchestrator.data.folds import TRAIN_ONLY
from orchestrator.data.pseudo import select, with_pseudo
from orchestrator.errors import InputError


def teacher(rows):
    """row_id, image_path (relative, as the ensemble logs it), prob_0..prob_2."""
    probs = np.array(rows, dtype=float)
    frame = pd.DataFrame({"row_id": np.arange(len(probs)) + 100, "image_path": [f"test/{i}.png" for i in range(len(probs))]})
    return frame.join(pd.DataFrame(probs, columns=[f"prob_{k}" for k in range(probs.shape[1])]))


PROBS = teacher([[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.1, 0.85, 0.05], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9], [0.6, 0.3, 0.1]])


def test_a_threshold_keeps_the_rows_whose_top_probability_reaches_it():
    chosen = select(PROBS, threshold=0.85, top_fraction=None)
    assert chosen["row_id"].tolist() == [100, 102, 104] and chosen["target"].tolist() == [0, 1, 2]


def test_a_top_fraction_keeps_the_most_confident_share_of_every_predicted_class():
    chosen = select(PROBS, threshold=None, top_fraction=0.5)
    # class 0 has rows 100, 101, 105 (keeps ceil(1.5) = 2: 0.95, 0.6); class 1: 102, 103 (keeps 1: 0.85); class 2: 104
    assert chosen["row_id"].tolist() == [100, 102, 104, 105]


def test_pseudo_rows_train_every_fold_and_validate_none():
    train = pd.DataFrame({"row_id": [0, 1, 2, 3], "image_path": ["/d/train/a.png", "/d/train/b.png", "/d/train/c.png", "/d/train/e.png"],
                          "rel_path": ["a.png", "b.png", "c.png", "e.png"], "target": [0, 1, 2, 0], "group": [None] * 4,
                          "fold": [0, 1, 0, 1]})
    test = pd.DataFrame({"row_id": PROBS["row_id"], "image_path": [f"/d/test/{i}.png" for i in range(6)],
                         "rel_path": PROBS["image_path"]})
    both = with_pseudo(train, test, select(PROBS, 0.85, None))
    added = both.iloc[4:]
    assert added["image_path"].tolist() == ["/d/test/0.png", "/d/test/2.png", "/d/test/4.png"]
    assert added["target"].tolist() == [0, 1, 2] and (added["fold"] == TRAIN_ONLY).all()
    assert added["row_id"].tolist() == [4, 5, 6] and both["row_id"].is_unique  # never an OOF row of the originals
    for fold in (0, 1):  # what build_trial takes: training = fold != k, validation = fold == k
        assert set(added["row_id"]) <= set(both[both["fold"] != fold]["row_id"])
        assert not set(added["row_id"]) & set(both[both["fold"] == fold]["row_id"])
    with pytest.raises(InputError, match=r"its test rows \[100\] are not in this grid's test set"):
        with_pseudo(train, test.iloc[1:], select(PROBS, 0.9, None))


def test_the_pseudo_block_takes_one_rule_and_names_its_round():
    assert PseudoConfig(teacher="abc").threshold == 0.9
    with pytest.raises(ValueError, match="give threshold or top_fraction, not both"):
        PseudoConfig(teacher="abc", threshold=0.8, top_fraction=0.3)
    rounds = {PseudoConfig(teacher=t, top_fraction=f).round_name for t in ("a", "b") for f in (0.2, 0.3)}
    assert len(rounds) == 4 and all(r.startswith("pseudo-") for r in rounds)
