"""Bad input through the real command: exit code 2 and a message naming the field, file or row."""

from __future__ import annotations

from tests.conftest import run_cli, write_grid


def check(tmp_path, grid: dict, *expected: str) -> None:
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # failed before touching anything


def test_unknown_key(tmp_path, minimal_grid):
    minimal_grid["data"]["image_sise"] = 32
    check(tmp_path, minimal_grid, "grid.yaml", "data.image_sise: unknown key", "did you mean image_size")


def test_wrong_type(tmp_path, minimal_grid):
    minimal_grid["train"]["epochs"] = "ten"
    check(tmp_path, minimal_grid, "train.epochs")


def test_unknown_model(tmp_path, minimal_grid):
    minimal_grid["models"] = [{"name": "convnext_tiniest"}]
    check(tmp_path, minimal_grid, "models.0.name", "unknown timm model 'convnext_tiniest'", "convnext_tiny")


def test_missing_data_root(tmp_path, minimal_grid):
    minimal_grid["data"]["root"] = str(tmp_path / "nowhere")
    check(tmp_path, minimal_grid, "data.root: directory not found", "nowhere")


def test_empty_class_list(tmp_path, minimal_grid, tiny_sketch):
    (tiny_sketch / "train.csv").write_text("class_name,image_path,target\n")
    check(tmp_path, minimal_grid, "train.csv", "has no rows")


def test_missing_and_unreadable_images(tmp_path, minimal_grid, tiny_sketch):
    (tiny_sketch / "train" / "ant" / "2.png").unlink()
    (tiny_sketch / "train" / "cat" / "5.png").write_text("garbage")
    check(tmp_path, minimal_grid, "2 of 18 images cannot be used", "train.csv line 4", "ant/2.png is missing",
          "train.csv line 19", "cat/5.png is unreadable")


def test_path_escaping_the_data_root(tmp_path, minimal_grid, tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text(csv.read_text().replace("ant/0.png", "../../../etc/passwd"))
    check(tmp_path, minimal_grid, "train.csv line 2", "escapes the data root")


def test_bad_override(tmp_path, minimal_grid):
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, minimal_grid)), "--set", "train.optimizer.lr=-1",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "train.optimizer.lr" in result.stderr


def test_dry_run_prints_plan_and_touches_nothing(tmp_path, minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}}
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, minimal_grid)), "--dry-run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0
    assert "6 trials = 2 configs x 3 folds" in result.stdout and "data ok: 18 train rows, 3 classes" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml", "tiny"]  # no mlflow.db, ray_results, ...


def dry_run(tmp_path, grid: dict):
    return run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), "--dry-run", cwd=tmp_path, timeout=300)


def test_a_search_value_its_key_refuses_names_the_axis_and_the_value(tmp_path, minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [1.0e-3, -1.0]}}
    result = dry_run(tmp_path, minimal_grid)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "search.train.optimizer.lr: the value -1.0 is refused" in result.stderr


def test_a_repeated_train_row_is_refused_with_its_lines(tmp_path, minimal_grid, tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text(csv.read_text() + "bee,bee/2.png,1\n")  # line 20 repeats line 10
    result = dry_run(tmp_path, minimal_grid)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.csv: 1 line(s) name the image of an earlier line" in result.stderr
    assert "line 20 repeats line 10: " in result.stderr
    assert "leak" in result.stderr


def test_a_class_with_fewer_images_than_folds_is_named(tmp_path, minimal_grid, tiny_sketch):
    csv = tiny_sketch / "train.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if not line.startswith("cat,cat/") or "/0." in line))
    result = dry_run(tmp_path, minimal_grid)
    assert result.returncode == 0  # it can run; the person running it is told what the folds will lack
    assert "'cat' (1)" in result.stderr and "a single image" in result.stderr and "folds.kind: holdout" in result.stderr


def test_an_image_folder_root_one_level_too_high_is_refused_with_the_fix(tmp_path, minimal_grid, tiny_sketch):
    """`glyphs/` holds train/<class>/ and test/: train and test would become the two classes."""
    (tiny_sketch / "test").mkdir()
    (tiny_sketch / "train" / "ant" / "0.png").rename(tiny_sketch / "test" / "0.png")
    minimal_grid["data"] = {"source": "image_folder", "root": str(tiny_sketch), "image_size": 16}
    result = dry_run(tmp_path, minimal_grid)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"did you mean data.root: {tiny_sketch / 'train'} and data.test_root: {tiny_sketch / 'test'}?" in result.stderr
    minimal_grid["data"].update(root=str(tiny_sketch / "train"), test_root=str(tiny_sketch / "train" / "ant"))
    result = dry_run(tmp_path, minimal_grid)
    assert result.returncode == 2 and "data.test_root: " in result.stderr and "is inside data.root" in result.stderr


def test_the_ensemble_before_any_grid_says_so_and_leaves_no_experiment(tmp_path, minimal_grid):
    from mlflow.tracking import MlflowClient

    result = run_cli("orchestrator.ensemble", str(write_grid(tmp_path, minimal_grid)), cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no experiment 'tiny': run the grid first" in result.stderr
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("tiny") is None


def test_predict_without_a_model_names_the_grid_file_given(tmp_path, minimal_grid, tiny_sketch):
    grid_file = write_grid(tmp_path, minimal_grid, name="my_grid.yaml")
    image = tiny_sketch / "train" / "ant" / "0.png"
    result = run_cli("orchestrator.predict", str(grid_file), str(image), cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"run `python -m orchestrator.ensemble {grid_file}` first" in result.stderr


def test_an_unknown_augment_preset_lists_what_each_one_does(tmp_path, minimal_grid):
    minimal_grid["train"]["augment"] = "light"
    check(tmp_path, minimal_grid, "train.augment: unknown augment preset 'light'; valid presets:",
          "light_noflip        sketch_light without the flip: for characters, digits and text")


def csv_grid(root, **data) -> dict:
    return {"name": "comp", "data": {"source": "csv", "root": str(root), "image_size": 16, "folds": {"n_splits": 2}, **data},
            "models": [{"name": "test_resnet"}], "train": {"epochs": 1, "batch_size": 4}}


def test_a_kaggle_csv_read_as_sketch_csv_says_to_set_source_csv(tmp_path, tiny_competition):
    grid = csv_grid(tiny_competition)
    grid["data"]["source"] = "sketch_csv"
    check(tmp_path, grid, "train.csv: missing column(s) image_path, target; found image_id, label",
          "set data.source: csv", "docs/data.md")


def test_csv_missing_column_names_the_columns_found_and_the_key(tmp_path, tiny_competition):
    check(tmp_path, csv_grid(tiny_competition, label_column="class"), "train.csv", "missing column 'class' "
          "(data.label_column); found image_id, label: set data.label_column to one of them")


def test_csv_test_ids_without_images_are_named(tmp_path, tiny_competition):
    for name in ("t1.jpg", "007.jpg"):
        (tiny_competition / "test_images" / name).unlink()
    check(tmp_path, csv_grid(tiny_competition), "sample_submission.csv", "2 of 4 ids in column 'image_id' have no image",
          "line 3: 't1' has no file t1 or t1.<ext>", "line 4: '007'", "Set data.test_images")


def test_a_dry_run_without_test_rows_warns_that_no_submission_comes_of_it(tmp_path, tiny_competition):
    (tiny_competition / "sample_submission.csv").unlink()
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, csv_grid(tiny_competition))), "--dry-run", cwd=tmp_path,
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert "0 test rows" in result.stdout
    assert ("warning: no test rows, so the ensemble will write no submission; the csv source reads them from "
            "data.test_csv (sample_submission.csv)") in result.stderr
