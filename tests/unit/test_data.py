"""Source adapters, path safety, image checks and folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import DataConfig, FoldsConfig
from orchestrator.data.folds import TRAIN_ONLY, assign_folds, class_size_warnings
from orchestrator.data.images import read_image, safe_join
from orchestrator.data.sources import load_image_folder, load_sketch_csv
from orchestrator.errors import InputError


def sketch(root, **kw) -> DataConfig:
    return DataConfig(source="sketch_csv", root=root, **kw)


def test_sketch_csv_loads_mixed_modes(tiny_sketch):
    tables = load_sketch_csv(sketch(tiny_sketch))
    assert tables.classes == ["ant", "bee", "cat"] and len(tables.train) == 18 and tables.test is None
    assert all(read_image(p).shape[2] == 3 for p in tables.train["image_path"])  # L, RGB, RGBA -> RGB


@pytest.mark.parametrize("relative", ["../../etc/passwd", "/etc/passwd", "ant/../../x.png", "~/x.png"])
def test_paths_cannot_escape_the_data_root(tmp_path, relative):
    with pytest.raises(InputError, match=r"train.csv line 2"):
        safe_join(tmp_path, relative, "train.csv line 2")


def test_missing_image_names_row_and_path(tiny_sketch):
    (tiny_sketch / "train" / "bee" / "3.png").unlink()
    with pytest.raises(InputError) as info:
        load_sketch_csv(sketch(tiny_sketch))
    assert "train.csv line 11" in str(info.value) and "bee/3.png is missing" in str(info.value)


def test_unreadable_image_names_row(tiny_sketch):
    (tiny_sketch / "train" / "cat" / "0.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"line 14: .*cat/0.png is unreadable"):
        load_sketch_csv(sketch(tiny_sketch))


def test_target_must_match_class_name(tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text(csv.read_text().replace("bee,bee/0.png,1", "bee,bee/0.png,2"))
    with pytest.raises(InputError, match="line 8: target 2 does not match class_name 'bee'"):
        load_sketch_csv(sketch(tiny_sketch))


def test_empty_class_list(tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text("class_name,image_path,target\n" + "".join(f"ant,ant/{i}.png,0\n" for i in range(6)))
    with pytest.raises(InputError, match="class list has 1 class"):
        load_sketch_csv(sketch(tiny_sketch))


def test_missing_root_and_columns(tmp_path, tiny_sketch):
    with pytest.raises(InputError, match=r"data.root: directory not found"):
        load_sketch_csv(sketch(tmp_path / "nope"))
    (tiny_sketch / "train.csv").write_text("path,label\nant/0.png,0\n")
    with pytest.raises(InputError, match="missing column"):
        load_sketch_csv(sketch(tiny_sketch))


def test_image_folder(tiny_sketch):
    (tiny_sketch / "train" / ".hidden").mkdir()
    tables = load_image_folder(DataConfig(source="image_folder", root=tiny_sketch / "train"))
    assert tables.classes == ["ant", "bee", "cat"] and len(tables.train) == 18


def test_image_folder_refuses_split_folders_as_classes(tmp_path):
    from orchestrator.data.sources import check_folder_layout

    with pytest.raises(InputError, match=r"holds split folders \(test, train\).*did you mean data.root: .*/g/train and "
                                         r"data.test_root: .*/g/test\?"):
        check_folder_layout(tmp_path / "g", ["test", "train"], None)
    with pytest.raises(InputError, match=r"holds split folders \(val\).*did you mean data.test_root: .*/g/val\?"):
        check_folder_layout(tmp_path / "g", ["a", "b", "val"], None)
    check_folder_layout(tmp_path / "g", ["ant", "bee"], tmp_path / "test")  # fine


def frame(n_per_class=20, classes=4, groups=None) -> pd.DataFrame:
    targets = np.repeat(np.arange(classes), n_per_class)
    return pd.DataFrame({"target": targets, "group": groups if groups is not None else None})


def test_stratified_folds_are_balanced_and_reproducible():
    rows = frame()
    cfg = FoldsConfig(kind="stratified", n_splits=5)
    folds = assign_folds(rows, cfg, seed=1)
    assert np.array_equal(folds, assign_folds(rows, cfg, seed=1))
    assert not np.array_equal(folds, assign_folds(rows, cfg, seed=2))
    counts = pd.crosstab(folds, rows["target"])
    assert (counts.to_numpy() == 4).all()  # every fold holds 4 of each class's 20


def test_grouped_folds_keep_groups_together():
    groups = np.repeat(np.arange(16), 5).astype(str)
    rows = frame(groups=groups)
    folds = assign_folds(rows, FoldsConfig(kind="stratified_group", n_splits=4), seed=0)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1


def test_holdout_has_one_validation_fold():
    folds = assign_folds(frame(), FoldsConfig(kind="holdout", n_splits=5), seed=0)
    assert set(folds) == {0, TRAIN_ONLY} and (folds == 0).sum() == 16


def test_grouped_folds_need_groups():
    with pytest.raises(InputError, match="needs a group per row"):
        assign_folds(frame(), FoldsConfig(kind="stratified_group", n_splits=4), seed=0)


def test_a_repeated_image_is_refused_naming_both_lines(tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text(csv.read_text() + "bee,./bee/2.png,1\n")  # the same file, spelt differently
    with pytest.raises(InputError, match=r"train.csv: 1 line\(s\) name the image of an earlier line(.|\n)*line 20 repeats line 10"):
        load_sketch_csv(sketch(tiny_sketch))


def test_small_classes_are_named_with_what_to_do():
    rows = pd.DataFrame({"target": [0] * 10 + [1] * 2 + [2], "group": None})
    (warning,) = class_size_warnings(rows, FoldsConfig(kind="stratified", n_splits=5), ["a", "b", "c"])
    assert "'b' (2), 'c' (1)" in warning and "a single image" in warning and "n_splits" in warning
    assert class_size_warnings(rows, FoldsConfig(kind="stratified", n_splits=2), ["a", "b", "c"])  # c alone
    assert not class_size_warnings(rows[rows["target"] < 2], FoldsConfig(kind="stratified", n_splits=2), ["a", "b"])
    grouped = pd.DataFrame({"target": [0, 0, 0, 1, 1, 1], "group": ["p", "q", "r", "s", "s", "s"]})
    (warning,) = class_size_warnings(grouped, FoldsConfig(kind="stratified_group", n_splits=3), ["a", "b"])
    assert "'b' (1)" in warning and "group" in warning  # three photos, one person
    with pytest.raises(InputError, match=r"holdout split needs at least 2 .*'c' \(1\)"):
        class_size_warnings(rows, FoldsConfig(kind="holdout", n_splits=5), ["a", "b", "c"])
