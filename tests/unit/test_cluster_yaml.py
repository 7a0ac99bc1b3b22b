"""Every cluster config passes Ray's own `ray up` validation."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

CLUSTER_FILES = [REPO / "cluster.yaml", *sorted((REPO / "cluster").glob("*.yaml"))]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_config_is_valid(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(yaml.safe_load(path.read_text())))


def test_validation_rejects_unknown_keys():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["max_wrokers"] = 3
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(prepare_config(config))


def test_servers_bind_to_localhost():
    text = (REPO / "cluster.yaml").read_text()
    assert "--dashboard-host=127.0.0.1" in text and "mlflow server --host 127.0.0.1" in text


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_head_declares_the_trial_slots(path):
    """Without it the runner falls back to Tune's trial cap, under which fold_asha cannot pause."""
    from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS

    head = " ".join(yaml.safe_load(path.read_text())["head_start_ray_commands"])
    assert f"--resources='{{\"{TRIAL_SLOTS}\":{int(SLOT_UNITS)}}}'" in head
