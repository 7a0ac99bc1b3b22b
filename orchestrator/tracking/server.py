"""`python -m orchestrator.tracking.server start|stop`: the MLflow server on a cluster's head node.

`start` runs `mlflow server` detached (it outlives the SSH session of `ray up`),
bound to 127.0.0.1 unless `--host` says otherwise, with proxied artifacts: runs'
files go through the server to `--artifacts-destination` (a bucket or a shared
folder), so no client needs bucket credentials. It waits until /health answers,
and exits 1 with the server's log tail if it does not. A server from an earlier
`start` (its pid file in --state-dir) is stopped first: `ray up` reruns the head's
start commands. `stop` ends it. A bucket destination is checked first (its client
installed, a file written and deleted): credentials and endpoint come the standard
ways (AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL, AWS_* keys or the instance profile).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from orchestrator.cli import EXIT_ERROR, EXIT_OK, main_guard

STATE_DIR = "~/mlflow"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.tracking.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--state-dir", default=STATE_DIR, help=f"pid file, log, default stores (default {STATE_DIR})")
    parser.add_argument("--backend-store-uri", default=None,
                        help="runs and metrics (default: sqlite in --state-dir; only this server opens it)")
    parser.add_argument("--artifacts-destination", default=None,
                        help="where artifacts land: s3://bucket/path, gs://..., or a shared folder (default: --state-dir)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: reach it by SSH tunnel)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server to answer")
    return parser.parse_args(argv)


def stop(state: Path) -> None:
    pid_file = state / "mlflow.pid"
    if not pid_file.exists():
        return
    try:
        group = int(pid_file.read_text())
        os.killpg(group, signal.SIGTERM)  # the server and its uvicorn workers
        for _ in range(100):  # its port is free once it is gone: a `start` may follow
            time.sleep(0.1)
            os.killpg(group, 0)
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, ValueError):
        pass
    pid_file.unlink()


def healthy(host: str, port: int) -> bool:
    address = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def check_artifacts(destination: str) -> None:
    """A bucket destination: the server's S3/GCS client is installed and the bucket takes a file (else exit 2)."""
    import importlib.util

    from orchestrator.errors import InputError
    from orchestrator.search.preflight import check_storage
    from orchestrator.storage import is_uri

    needs = {"s3://": ("boto3", "aws"), "gs://": ("google.cloud.storage", "gcp")}
    for scheme, (module, extra) in needs.items():
        if destination.startswith(scheme) and importlib.util.find_spec(module.split(".")[0]) is None:
            raise InputError(f"--artifacts-destination {destination}: the MLflow server writes it with {module}, "
                             f"which is not installed: pip install -e '.[{extra}]'")
    if is_uri(destination):
        check_storage(destination, "--artifacts-destination")


def start(args: argparse.Namespace, state: Path) -> int:
    if args.artifacts_destination:
        check_artifacts(args.artifacts_destination)
    stop(state)
    state.mkdir(parents=True, exist_ok=True)
    backend = args.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
    artifacts = args.artifacts_destination or str(state / "artifacts")
    log = state / "mlflow.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", args.host, "--port", str(args.port),
               "--backend-store-uri", backend, "--artifacts-destination", artifacts]
    with log.open("a") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=state)
    (state / "mlflow.pid").write_text(str(process.pid))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and process.poll() is None:
        if healthy(args.host, args.port):
            print(f"MLflow server on http://{args.host}:{args.port} (pid {process.pid}); runs in {backend}, "
                  f"artifacts in {artifacts}; log {log}")
            return EXIT_OK
        time.sleep(1)
    print(f"MLflow server did not answer on {args.host}:{args.port} within {args.timeout:.0f} s "
          f"(exit code {process.poll()}); last lines of {log}:\n{log.read_text()[-3000:]}", file=sys.stderr)
    stop(state)
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = Path(os.path.expanduser(args.state_dir)).resolve()
    if args.action == "stop":
        stop(state)
        return EXIT_OK
    return start(args, state)


if __name__ == "__main__":
    sys.exit(main_guard(main))
