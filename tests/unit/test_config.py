"""Config parsing: overrides, and errors that name the field and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config import load_grid, parse_grid
from orchestrator.errors import InputError
from orchestrator.search.preflight import check_libraries
from tests.conftest import REPO, write_grid


def error_of(raw: dict) -> str:
    """The error the driver gives: the grid's validation, then the names it gives timm and albumentations."""
    with pytest.raises(InputError) as info:
        check_libraries(parse_grid(raw, source="grid.yaml"), "grid.yaml")
    return str(info.value)


def test_defaults_fill_in(minimal_grid):
    grid = parse_grid(minimal_grid)
    assert grid.train.optimizer.name == "adamw" and grid.scheduler.kind == "asha"
    assert grid.data.folds.folds_to_train() == [0, 1, 2]


def test_unknown_key_names_field_and_suggests(minimal_grid):
    minimal_grid["train"]["epoch"] = 3
    message = error_of(minimal_grid)
    assert "grid.yaml" in message and "train.epoch: unknown key" in message and "did you mean epochs" in message


def test_wrong_type_names_field(minimal_grid):
    minimal_grid["train"]["batch_size"] = "large"
    assert "train.batch_size" in error_of(minimal_grid)


def test_unknown_model_lists_close_matches(minimal_grid):
    minimal_grid["models"] = [{"name": "resnet181"}]
    message = error_of(minimal_grid)
    assert "models.0.name" in message and "unknown timm model 'resnet181'" in message and "resnet18" in message


def test_unknown_registry_names_list_valid_ones(minimal_grid):
    minimal_grid["train"]["optimizer"] = {"name": "adamm"}
    message = error_of(minimal_grid)
    assert "train.optimizer.name" in message and "adamw" in message and "sgd" in message


def test_search_path_must_exist(minimal_grid):
    minimal_grid["search"] = {"train.optimiser.lr": {"grid": [0.1]}}
    assert "search.train.optimiser.lr" in error_of(minimal_grid)


def test_search_axis_needs_exactly_one_kind(minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1], "uniform": [0.1, 0.2]}}
    assert "exactly one" in error_of(minimal_grid)


def test_fold_use_must_exist(minimal_grid):
    minimal_grid["data"]["folds"]["use"] = [0, 5]
    assert "fold 5 does not exist" in error_of(minimal_grid)


def test_fold_asha_needs_the_grid_searcher(minimal_grid):
    minimal_grid.update(searcher="optuna", scheduler={"kind": "fold_asha"})
    with pytest.raises(InputError, match=r"fold_asha.*searcher: optuna"):
        parse_grid(minimal_grid)


def test_metric_mode_mismatch(minimal_grid):
    minimal_grid["scheduler"] = {"metric": "val_loss", "mode": "max"}
    assert "set mode: min" in error_of(minimal_grid)


def test_bad_augment_transform_and_argument(minimal_grid):
    minimal_grid["train"]["augment"] = [{"name": "HorizontalFlp"}]
    assert "did you mean HorizontalFlip" in error_of(minimal_grid)
    minimal_grid["train"]["augment"] = [{"name": "HorizontalFlip", "prob": 0.5}]
    assert "unknown argument(s) prob" in error_of(minimal_grid)


def test_overrides_apply_dotted_paths(tmp_path, minimal_grid):
    path = write_grid(tmp_path, minimal_grid)
    grid = load_grid(path, [("train.epochs", "7"), ("models.0.name", "test_vit"),
                            ("search.train.optimizer.lr", "{grid: [0.1, 0.01]}")])
    assert grid.train.epochs == 7 and grid.models[0].name == "test_vit"
    assert grid.search["train.optimizer.lr"].grid == [0.1, 0.01]


def test_override_into_a_value_is_an_error(tmp_path, minimal_grid):
    path = write_grid(tmp_path, minimal_grid)
    with pytest.raises(InputError, match=r"train.epochs is a value"):
        load_grid(path, [("train.epochs.x", "1")])


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_grid(bad)
    with pytest.raises(InputError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_experiment_validates(path: Path):
    grid = load_grid(path)
    check_libraries(grid, str(path))
    assert grid.name and grid.models


def test_resolved_config_round_trips(minimal_grid):
    grid = parse_grid(minimal_grid)
    assert parse_grid(yaml.safe_load(yaml.safe_dump(grid.model_dump(mode="json")))) == grid


@pytest.mark.parametrize("axis,value", [({"grid": [1.0e-3, -1.0]}, "-1.0"), ({"loguniform": [1.0e-4, 2.0]}, "2.0")])
def test_a_search_value_its_key_refuses_is_named(minimal_grid, axis, value):
    minimal_grid["search"] = {"train.optimizer.lr" if "grid" in axis else "model.drop_rate": axis}
    with pytest.raises(InputError, match=rf"search\.[a-z_.]+: the value {value} is refused"):
        parse_grid(minimal_grid)


def test_search_values_are_checked_by_the_keys_own_rules(minimal_grid):
    minimal_grid["search"] = {"model.name": {"choice": ["test_resnet", "resnet_nope"]},
                              "train.epochs": {"randint": [1, 4]}}
    with pytest.raises(InputError, match=r"search\.model\.name: the value 'resnet_nope' is refused .*unknown timm model"):
        check_libraries(parse_grid(minimal_grid), "grid.yaml")
    minimal_grid["search"] = {"train.epochs": {"randint": [0, 4]}}
    with pytest.raises(InputError, match=r"search\.train\.epochs: the value 0 is refused"):
        parse_grid(minimal_grid)


def test_a_float_range_on_a_whole_number_key_is_refused_before_anything_runs(minimal_grid):
    minimal_grid["search"] = {"train.epochs": {"uniform": [2, 6]}}  # both ends are whole, a draw between is not
    with pytest.raises(InputError, match=r"search\.train\.epochs: the value 3\.48 is refused"):
        parse_grid(minimal_grid)


def test_ensemble_register_is_the_yaml_key_and_survives_a_round_trip(minimal_grid):
    minimal_grid["ensemble"] = {"register": False, "alias": "staging"}
    grid = parse_grid(minimal_grid)
    assert grid.ensemble.register_model is False and grid.ensemble.alias == "staging"
    dumped = grid.model_dump(mode="json")
    assert dumped["ensemble"]["register"] is False and parse_grid(dumped).ensemble == grid.ensemble
    minimal_grid["ensemble"] = {"alias": "not an alias"}
    with pytest.raises(InputError, match=r"ensemble\.alias"):
        parse_grid(minimal_grid)


def test_a_storage_uri_may_carry_its_endpoint_but_never_credentials():
    from orchestrator.config import parse_grid
    from orchestrator.errors import InputError

    base = {"name": "g", "data": {}, "models": [{"name": "test_resnet"}]}
    ok = parse_grid({**base, "tracking": {"storage": "s3://b/runs?endpoint_override=minio:9000&scheme=http"}})
    assert ok.tracking.storage.endswith("&scheme=http")
    for storage in ("s3://b/runs?access_key=AKIA123&secret_key=s3cr3t", "s3://AKIA123:s3cr3t@b/runs"):
        with pytest.raises(InputError, match=r"tracking\.storage: carries credentials: give them the standard way") as err:
            parse_grid({**base, "tracking": {"storage": storage}})
        assert "s3cr3t" not in str(err.value)


def test_loading_a_grid_imports_no_torch_timm_or_albumentations():
    """The driver's checks, `--dry-run` and the ensemble read grids; only the driver's preflight asks timm."""
    import subprocess
    import sys

    code = ("import sys; from orchestrator.config import load_grid; [load_grid(p) for p in sys.argv[1:]]; "
            "print(sorted({'torch', 'timm', 'albumentations', 'ray', 'mlflow'} & set(sys.modules)))")
    paths = [str(p) for p in sorted((REPO / "experiments").glob("*.yaml"))]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_registry_is_keyed_by_its_catalog_names():
    from orchestrator import catalog
    from orchestrator.data.sources import SOURCES
    from orchestrator.data.transforms import PRESETS
    from orchestrator.train.heads import HEADS
    from orchestrator.train.losses import LOSSES
    from orchestrator.train.optim import LR_SCHEDULERS

    assert set(SOURCES) == set(catalog.SOURCES) and set(LOSSES) == set(catalog.LOSSES)
    assert set(LR_SCHEDULERS) == set(catalog.LR_SCHEDULERS) and set(HEADS) == set(catalog.HEADS)
    assert list(PRESETS) == list(catalog.AUGMENT)
