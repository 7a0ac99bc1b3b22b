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


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_servers_bind_to_localhost_and_the_head_runs_mlflow(path):
    head = yaml.safe_load(path.read_text())["head_start_ray_commands"]
    assert any("ray start --head" in c and "--dashboard-host=127.0.0.1" in c for c in head)
    (server,) = [c for c in head if "orchestrator.tracking.server start" in c]
    assert "--host" not in server  # the server's default: 127.0.0.1


def test_mlflow_server_binds_localhost_unless_told():
    from orchestrator.tracking.server import parse_args

    assert parse_args(["start"]).host == "127.0.0.1"


@pytest.mark.parametrize("path", [p for p in CLUSTER_FILES if p.name != "local.yaml"], ids=lambda p: p.name)
def test_remote_clusters_install_this_checkout_and_carry_the_token(path):
    config = yaml.safe_load(path.read_text())
    assert config["file_mounts"]["~/orchestrator"] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # Ray token auth on every node
    assert any(c.startswith('pip install -e "$HOME/orchestrator') for c in config["setup_commands"])


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_head_declares_the_trial_slots(path):
    """Without it the runner falls back to Tune's trial cap, under which fold_asha cannot pause."""
    from orchestrator.search.trainable import SLOT_UNITS, TRIAL_SLOTS

    head = " ".join(yaml.safe_load(path.read_text())["head_start_ray_commands"])
    assert f"--resources='{{\"{TRIAL_SLOTS}\":{int(SLOT_UNITS)}}}'" in head
