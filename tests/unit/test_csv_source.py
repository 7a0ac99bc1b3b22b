"""The csv source: ids to images, labels to classes, the test CSV to the submission's shape, and the messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from orchestrator.config import DataConfig, parse_grid
from orchestrator.data.csv_source import load_csv
from orchestrator.data.submission import SubmissionFormat, detect
from orchestrator.errors import InputError


def config(root: Path, **keys) -> DataConfig:
    return DataConfig(source="csv", root=root, **keys)


def test_ids_with_or_without_an_extension_find_their_images(tiny_competition):
    tables = load_csv(config(tiny_competition))
    assert tables.classes == ["ant", "bee", "cat"]
    assert tables.train["target"].tolist() == [0, 0, 1, 1, 2, 2]
    assert tables.train["rel_path"].tolist() == ["a1.png", "a2.png", "b1.png", "sub/b2.png", "c1.png", "c2.png"]
    assert tables.test["rel_path"].tolist() == ["t3", "t1", "007", "t2"]  # the ids as the CSV spells them, in order
    assert tables.test["image_path"].str.endswith(".jpg").all()
    assert tables.submission == SubmissionFormat("image_id", ["image_id", "label"], "labels", "label")


def test_the_submission_keeps_the_test_csvs_rows_and_writes_class_names(tiny_competition):
    fmt = load_csv(config(tiny_competition)).submission
    probs = np.eye(3)[[2, 0, 1, 1]]
    written = fmt.write(np.array(["t3", "t1", "007", "t2"], dtype=object), probs, probs.argmax(1), ["ant", "bee", "cat"])
    assert written.to_dict("list") == {"image_id": ["t3", "t1", "007", "t2"], "label": ["cat", "ant", "bee", "bee"]}


def test_integer_labels_sort_numerically_and_are_written_as_integers(tiny_competition):
    frame = pd.read_csv(tiny_competition / "train.csv")
    frame["label"] = [10, 10, 2, 2, 7, 7]
    frame.to_csv(tiny_competition / "train.csv", index=False)
    tables = load_csv(config(tiny_competition))
    assert tables.classes == ["2", "7", "10"] and tables.submission.int_labels
    written = tables.submission.write(np.array(["x"]), np.array([[0.1, 0.2, 0.7]]), np.array([2]), tables.classes)
    assert written["label"].tolist() == [10] and written["label"].dtype == np.int64


def test_a_probability_sample_gets_every_class_in_its_column_order(tiny_competition):
    (tiny_competition / "sample_submission.csv").write_text("image_id,cat,ant,bee\nt3,0.3,0.3,0.4\nt1,0,0,1\n007,1,0,0\nt2,0,1,0\n")
    tables = load_csv(config(tiny_competition))
    fmt = tables.submission
    assert fmt.values == "probabilities" and fmt.columns == ["image_id", "cat", "ant", "bee"]
    probs = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], dtype=np.float32)
    written = fmt.write(tables.test["rel_path"].to_numpy(), probs, probs.argmax(1), tables.classes)
    assert written.columns.tolist() == ["image_id", "cat", "ant", "bee"]
    np.testing.assert_allclose(written[["ant", "bee", "cat"]].to_numpy(), probs, rtol=1e-6)
    np.testing.assert_allclose(written[["cat", "ant", "bee"]].sum(1), 1.0)


def test_a_sample_missing_some_class_columns_or_labels_says_how_to_fix_it(tiny_competition):
    test = pd.DataFrame({"image_id": ["x"], "ant": [0.5], "bee": [0.5]})
    with pytest.raises(ValueError, match=r"2 of the 3 classes \(none for cat\).*data.submit: labels"):
        detect(test, "s.csv", "image_id", "label", ["ant", "bee", "cat"], "auto")
    two = detect(pd.DataFrame({"image_id": ["x"], "label": [0.5]}), "s.csv", "image_id", "label", ["no", "yes"],
                 "probabilities")[0]
    assert two.values == "positive"  # a binary AUC competition: P(yes) in the label column
    assert two.write(np.array(["x"]), np.array([[0.2, 0.8]]), np.array([1]), ["no", "yes"])["label"].tolist() == [0.8]


def test_missing_columns_and_ids_name_what_was_found_and_the_key_to_set(tiny_competition):
    with pytest.raises(InputError, match=r"missing column 'name' \(data.id_column\); found image_id, label: set "
                                         r"data.id_column to one of them"):
        load_csv(config(tiny_competition, id_column="name"))
    (tiny_competition / "test_images" / "t2.jpg").unlink()
    with pytest.raises(InputError, match=r"1 of 4 ids in column 'image_id' have no image .*\n  line 5: 't2' has no "
                                         r"file t2 or t2.<ext>\nSet data.test_images"):
        load_csv(config(tiny_competition))


def test_an_id_matching_two_files_or_leaving_the_folder_is_refused(tiny_competition):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tiny_competition / "train_images" / "a1.jpg")
    with pytest.raises(InputError, match=r"'a1' matches 2 files \(a1.jpg, a1.png\); name the file with its extension"):
        load_csv(config(tiny_competition))
    (tiny_competition / "train_images" / "a1.jpg").unlink()
    frame = pd.read_csv(tiny_competition / "train.csv")
    frame.loc[0, "image_id"] = "../train.csv"
    frame.to_csv(tiny_competition / "train.csv", index=False)
    with pytest.raises(InputError, match="escapes the data root"):
        load_csv(config(tiny_competition))


def test_the_test_csv_is_optional_by_default_and_required_when_named(tiny_competition):
    (tiny_competition / "sample_submission.csv").unlink()
    assert load_csv(config(tiny_competition)).test is None
    with pytest.raises(InputError, match=r"data.test_csv: .*test.csv not found"):
        load_csv(config(tiny_competition, test_csv="test.csv"))


def test_csv_keys_on_another_source_are_an_error():
    with pytest.raises(InputError, match=r"data: id_column: only the csv source reads it; set source: csv"):
        parse_grid({"name": "x", "data": {"source": "sketch_csv", "id_column": "image_id"}, "models": [{"name": "test_resnet"}]})
