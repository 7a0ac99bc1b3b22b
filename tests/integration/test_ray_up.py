"""The on-prem path for real: sshd on 127.0.0.1, `ray up cluster/local.yaml`, a grid, the ensemble, `ray down`.

The commands are docs/cluster.md's; only the SSH key, the MLflow
server's port and its folder, and the PATH of the environment running the tests (a
virtualenv's, which a login shell over SSH lacks) are this test's own. Installs openssh-server and
rsync (Debian packages) when they are missing and this runs as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, mlflow_runs, quickdraw_grid, write_grid
from tests.integration.test_grid_end_to_end import free_port


def ensure_packages() -> None:
    if shutil.which("sshd", path="/usr/sbin:/usr/bin") and shutil.which("rsync"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs sshd and rsync (apt-get install openssh-server rsync, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "openssh-server", "rsync"]):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sshd(tmp_path):
    """An sshd on 127.0.0.1:22 (the local provider's port) that takes only a fresh key; yields the key's path."""
    ensure_packages()
    if port_open(22):
        pytest.skip("127.0.0.1:22 is taken by another sshd; this test starts its own")
    folder = tmp_path / "ssh"
    folder.mkdir()
    for name in ("key", "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copy(folder / "key.pub", folder / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", "ListenAddress=127.0.0.1", "-o", f"HostKey={folder / 'host_key'}",
         "-o", f"AuthorizedKeysFile={folder / 'authorized_keys'}", "-o", "StrictModes=no", "-o", "PasswordAuthentication=no",
         "-o", f"PidFile={folder / 'sshd.pid'}"], stdout=(folder / "sshd.log").open("w"), stderr=subprocess.STDOUT)
    for _ in range(50):
        if port_open(22):
            break
        time.sleep(0.1)
    yield folder / "key"
    server.terminate()
    server.wait(timeout=10)


# The environment that runs the tests (a virtualenv, or the system Python): the commands the cluster runs over
# SSH run in a login shell, whose PATH lacks a virtualenv, so they are given this one's bin folder first.
BIN = Path(sys.executable).parent
ON_PATH = f"export PATH={BIN}:$PATH; "


def ray_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    ray = str(BIN / "ray") if (BIN / "ray").exists() else "ray"
    result = subprocess.run([ray, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                            env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **(env or {})})
    print(f"$ ray {' '.join(args)}  -> exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def test_ray_up_grid_ensemble_ray_down_on_the_local_provider(tmp_path, quickdraw_root, sshd, report_figure):
    port = free_port()
    config = yaml.safe_load((REPO / "cluster" / "local.yaml").read_text())
    config["auth"]["ssh_private_key"] = str(sshd)
    server = [c for c in config["head_start_ray_commands"] if "orchestrator.tracking.server start" in c]
    assert len(server) == 1 and "--port 5000" in server[0]
    config["head_start_ray_commands"] = [ON_PATH + c.replace("--port 5000", f"--port {port} --state-dir {tmp_path / 'mlflow'}")
                                         for c in config["head_start_ray_commands"]]
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump(config, sort_keys=False))
    assert ray_cli("get-auth-token", "--generate", cwd=REPO).returncode == 0  # docs/cluster.md: before `ray up`
    uri = f"http://127.0.0.1:{port}"
    grid = quickdraw_grid(quickdraw_root, "ray-up", models=[{"name": "test_resnet"}], scheduler={"kind": "fifo"},
                          tracking={"uri": uri, "storage": str(tmp_path / "ray_results")})
    grid["train"].update(epochs=1, batch_size=32)
    grid["data"]["folds"]["use"] = [0, 1]
    write_grid(tmp_path, grid)

    from mlflow.tracking import MlflowClient

    started = time.monotonic()
    up = ray_cli("up", "-y", "--no-config-cache", str(cluster), cwd=REPO)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        up_s = time.monotonic() - started
        run = ray_cli("exec", str(cluster), f"{ON_PATH}cd {tmp_path} && python -m orchestrator.run grid.yaml --address auto",
                      cwd=REPO)
        assert run.returncode == 0 and "2/2" in run.stdout
        job = ray_cli("job", "submit", "--address", "http://127.0.0.1:8265", "--",
                      sys.executable, "-m", "orchestrator.ensemble", str(tmp_path / "grid.yaml"), "--set",
                      f"ensemble.output={tmp_path / 'submission.csv'}", cwd=tmp_path, env={"RAY_AUTH_MODE": "token"})
        assert job.returncode == 0 and "succeeded" in job.stdout + job.stderr
        runs = mlflow_runs(uri, "ray-up")  # the head's MLflow server holds every run
        roles = sorted(r.data.tags["orchestrator.role"] for r in runs)
        assert roles == ["ensemble", "grid", "trial", "trial"]
        assert all(r.info.status == "FINISHED" for r in runs)
        client = MlflowClient(uri)
        for trial in (r for r in runs if r.data.tags["orchestrator.role"] == "trial"):  # served by the head's server
            assert {"oof.parquet", "test.parquet", "checkpoint", "confusion_matrix.png", "trial_config.json"} <= \
                {a.path for a in client.list_artifacts(trial.info.run_id)}
        stored = {p.name for p in (tmp_path / "mlflow" / "artifacts").rglob("*") if p.is_file()}
        assert {"oof.parquet", "model.pt", "folds.parquet", "submission.csv"} <= stored  # in its artifact store
        assert (tmp_path / "submission.csv").is_file()
        assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
        stop = ray_cli("exec", str(cluster), f"{ON_PATH}python -m orchestrator.tracking.server stop --state-dir "
                       f"{tmp_path / 'mlflow'}", cwd=REPO)
        assert stop.returncode == 0 and not port_open(port)
    finally:
        # `ray down` runs its own `ray stop` in the SSH login shell, whose PATH has no virtualenv: stop Ray with
        # this environment's first (docs/cluster.md's note for on-prem clusters in a virtualenv)
        ray_cli("exec", str(cluster), f"{ON_PATH}ray stop", cwd=REPO)
        down = ray_cli("down", "-y", str(cluster), cwd=REPO)
    assert down.returncode == 0
    assert subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, check=False).returncode == 1  # Ray is gone
    report_figure(f"ray up (local provider over sshd on 127.0.0.1): {up_s:.0f} s; up + 2-trial grid + ensemble job + "
                  f"down: {time.monotonic() - started:.0f} s")
