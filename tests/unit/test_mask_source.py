"""The Mask competition source on a generated layout of synthetic persons (real image files)."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.config import DataConfig, parse_grid
from orchestrator.data.folds import assign_folds
from orchestrator.data.mask import CLASSES, age_class, load_mask, mask_class, mask_submission
from orchestrator.errors import InputError
from tests.conftest import PEOPLE


def load(root, **kw):
    return load_mask(DataConfig(source="mask", root=root, **kw))


def test_class_formula_covers_all_18_classes(mask_root):
    tables = load(mask_root)
    assert len(tables.classes) == 18 and len(tables.train) == 12 * 7
    train = tables.train.assign(file=lambda f: f["rel_path"].str.split("/").str[1].str.split(".").str[0])
    for _, row in train.iterrows():
        _, gender, age = next(p for p in PEOPLE if p[0] == row["group"])
        mask = 0 if row["file"].startswith("mask") else 1 if row["file"] == "incorrect_mask" else 2
        assert row["target"] == mask * 6 + (gender.lower() == "female") * 3 + age_class(age, [30, 60])
    assert sorted(train["target"].unique()) == list(range(18))
    assert CLASSES[mask_class(2, 1, 2)] == "normal_female_old"


def test_age_bins_default_and_configurable(mask_root):
    assert [age_class(a, [30, 60]) for a in (29, 30, 59, 60)] == [0, 1, 1, 2]
    young_old = load(mask_root, age_bins=[20, 40]).train
    person_45 = young_old[young_old["group"] == "000005"]
    assert set(person_45["target"] % 3) == {2}  # 45 >= 40: old under these bins


def test_no_person_in_two_folds(mask_root):
    grid = parse_grid({"name": "m", "data": {"source": "mask", "root": str(mask_root), "folds": {"n_splits": 3}},
                       "models": [{"name": "test_resnet"}]})
    assert grid.data.folds.kind == "stratified_group" and grid.scheduler.metric == "val_f1"  # mask defaults
    train = load(mask_root).train
    folds = assign_folds(train, grid.data.folds, seed=0)
    assert pd.Series(folds).groupby(train["group"].to_numpy()).nunique().max() == 1
    assert len(set(folds)) == 3


def test_mask_refuses_folds_that_split_persons(mask_root):
    with pytest.raises(InputError, match="stratified_group"):
        parse_grid({"name": "m", "data": {"source": "mask", "root": str(mask_root), "folds": {"kind": "stratified"}},
                    "models": [{"name": "test_resnet"}]})


def test_submission_keeps_info_csv_order(mask_root):
    tables = load(mask_root)
    shuffled = tables.test.sample(frac=1, random_state=1)  # as if rows came back in another order
    predicted = shuffled["row_id"].to_numpy() + 10
    submission = mask_submission(shuffled, predicted, tables.classes)
    info = pd.read_csv(mask_root / "eval" / "info.csv")
    assert list(submission.columns) == ["ImageID", "ans"]
    assert submission["ImageID"].tolist() == info["ImageID"].tolist()
    assert submission["ans"].tolist() == [10, 11, 12, 13, 14]


def test_unexpected_file_name_is_named(mask_root):
    (mask_root / "train" / "images" / "000000_male_Asian_29" / "selfie.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match=r"selfie.jpg: unexpected file name"):
        load(mask_root)


def test_bad_gender_names_the_line(mask_root):
    csv = mask_root / "train" / "train.csv"
    csv.write_text(csv.read_text().replace("000003,male", "000003,unknown"))
    with pytest.raises(InputError, match="line 5: gender 'unknown'"):
        load(mask_root)


def test_a_person_listed_twice_is_refused(mask_root):
    csv = mask_root / "train" / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, "000099" + lines[3][len("000002"):]]) + "\n")  # another id, the same folder
    with pytest.raises(InputError, match=r"name the person folder of an earlier line.*\n  line 14 repeats line 4"):
        load(mask_root)
