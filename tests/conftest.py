"""Shared fixtures: small real datasets written in the competition layout, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def run_cli(module: str, *args: str, cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a user would (`env`: variables the user set); output is echoed for the
    test log."""
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **(env or {})}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    print(f"$ python -m {module} {' '.join(args)}  -> exit {result.returncode}\n{result.stdout}\n{result.stderr[-5000:]}")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, what: str, seconds: int = 60) -> None:
    """Poll `url` until it answers; fail the test after `seconds`."""
    import time
    import urllib.request

    for _ in range(seconds * 2):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{what} did not come up in {seconds} s")


def write_grid(folder: Path, grid: dict, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture(scope="session", autouse=True)
def image_cache_folder(tmp_path_factory):
    """Decode-once caches of the test run (its drivers and workers inherit the variable), not the user's."""
    os.environ["ORCHESTRATOR_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))


@pytest.fixture(scope="session")
def quickdraw_root(tmp_path_factory) -> Path:
    """quickdraw10, 150 doodles per class, as sketch_csv JPEGs with a held-out test split."""
    from orchestrator.data.export import export_sketch_csv, quickdraw_images

    if not QUICKDRAW.is_dir():
        pytest.skip(f"quickdraw10 not found at {QUICKDRAW}")
    root = tmp_path_factory.mktemp("quickdraw") / "sketch"
    images, targets, classes = quickdraw_images(QUICKDRAW, per_class=150)
    export_sketch_csv(images, targets, classes, root, test_fraction=0.2, seed=0)
    return root


def quickdraw_grid(root, name: str, **overrides) -> dict:
    grid = {
        "name": name,
        "seed": 7,
        "data": {"source": "sketch_csv", "root": str(root), "image_size": 32,
                 "folds": {"kind": "stratified", "n_splits": 3}},
        "models": [{"name": "resnet10t"}, {"name": "test_vit"}],
        "train": {"epochs": 3, "batch_size": 64, "optimizer": {"name": "adamw", "lr": 3.0e-3},
                  "scheduler": {"name": "cosine", "warmup_epochs": 0}, "augment": "sketch_light",
                  "loss": {"name": "cross_entropy", "label_smoothing": 0.1}},
        "scheduler": {"kind": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 3},
        "resources": {"cpus_per_worker": 1, "workers_per_trial": 1, "max_concurrent_trials": 2},
        "ensemble": {"top_k": 5, "method": "hill_climb", "output": "submission.csv"},
        "insight": {"gradcam_configs": 0, "gallery": 0},  # the tests that check these turn them on (Grad-CAM: a Ray task)
    }
    grid.update(overrides)
    return grid


@pytest.fixture
def tiny_sketch(tmp_path) -> Path:
    """3 classes x 6 images of mixed size and mode, sketch_csv layout; tests edit it to break it."""
    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(["ant", "bee", "cat"]):
        for i in range(6):
            rel = f"{name}/{i}.jpg"
            (root / "train" / name).mkdir(parents=True, exist_ok=True)
            size = (20 + 7 * i, 30 + 3 * k)
            mode = ["L", "RGB", "RGBA"][i % 3]
            array = rng.integers(0, 255, (size[1], size[0], {"L": 1, "RGB": 3, "RGBA": 4}[mode]), dtype=np.uint8)
            Image.fromarray(array.squeeze(), mode).save(root / "train" / rel.replace(".jpg", ".png"))
            rows.append(f"{name},{rel.replace('.jpg', '.png')},{k}")
    (root / "train.csv").write_text("class_name,image_path,target\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def minimal_grid(tiny_sketch) -> dict:
    return {
        "name": "tiny",
        "data": {"source": "sketch_csv", "root": str(tiny_sketch), "image_size": 16, "folds": {"kind": "stratified", "n_splits": 3}},
        "models": [{"name": "test_resnet"}],
        "train": {"epochs": 1, "batch_size": 4},
    }


@pytest.fixture
def tiny_competition(tmp_path) -> Path:
    """A Kaggle-style csv competition: 6 training rows over 3 string labels (ids: stems, a full name, a sub-folder
    path) in train.csv + train_images/, and 4 test rows (one id with leading zeros) in sample_submission.csv +
    test_images/, not in sorted order."""
    def image(path: Path, seed: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(path)

    root = tmp_path / "comp"
    ids = ["a1", "a2", "b1.png", "sub/b2", "c1", "c2"]
    for k, image_id in enumerate(ids):
        image(root / "train_images" / (image_id if image_id.endswith(".png") else f"{image_id}.png"), k)
    rows = [f"{i},{label}" for i, label in zip(ids, ["ant", "ant", "bee", "bee", "cat", "cat"])]
    (root / "train.csv").write_text("image_id,label\n" + "\n".join(rows) + "\n")
    for k, image_id in enumerate(["t3", "t1", "007", "t2"]):
        image(root / "test_images" / f"{image_id}.jpg", 10 + k)
    (root / "sample_submission.csv").write_text("image_id,label\nt3,ant\nt1,ant\n007,ant\nt2,ant\n")
    return root


@pytest.fixture(scope="session")
def kaggle_root(tmp_path_factory) -> Path:
    """quickdraw10, 80 doodles per class, in the Kaggle layout (export_kaggle_csv): class names, ids without
    ".png", a shuffled sample submission, held-out labels in test_labels.csv; `probabilities/` beside it holds the
    same competition with a probability sample (class columns in a shuffled order)."""
    from orchestrator.data.export import export_kaggle_csv, quickdraw_images

    if not QUICKDRAW.is_dir():
        pytest.skip(f"quickdraw10 not found at {QUICKDRAW}")
    root = tmp_path_factory.mktemp("kaggle")
    images, targets, classes = quickdraw_images(QUICKDRAW, per_class=80)
    export_kaggle_csv(images, targets, classes, root / "labels", test_fraction=0.25, seed=0)
    export_kaggle_csv(images, targets, classes, root / "probabilities", test_fraction=0.25, seed=0, probabilities=True)
    return root


@pytest.fixture(scope="session")
def multilabel_root(tmp_path_factory) -> Path:
    """quickdraw10 as a multi-label competition (export_multilabel_csv): 480 images of 1-3 drawings each on a 2 x 2
    grid, their classes as space-separated tags; a shuffled sample submission; held-out tags in test_labels.csv."""
    from orchestrator.data.export import export_multilabel_csv, quickdraw_images

    if not QUICKDRAW.is_dir():
        pytest.skip(f"quickdraw10 not found at {QUICKDRAW}")
    root = tmp_path_factory.mktemp("multilabel") / "tags"
    images, targets, classes = quickdraw_images(QUICKDRAW, per_class=100)
    export_multilabel_csv(images, targets, classes, root, count=480, test_fraction=0.25, seed=0)
    return root


# 12 persons: every gender x age-bin pair twice, ages on both sides of the bin edges
PEOPLE = [(f"{i:06d}", gender, age) for i, (gender, age) in enumerate(
    [("male", 29), ("male", 30), ("male", 59), ("male", 60), ("female", 18), ("female", 45), ("female", 70),
     ("female", 29), ("female", 30), ("male", 20), ("Female", 59), ("female", 60)])]
FILES = ["mask1.jpg", "mask2.png", "mask3.jpeg", "mask4.jpg", "mask5.jpg", "incorrect_mask.png", "normal.jpg"]


@pytest.fixture
def mask_root(tmp_path):
    root = tmp_path / "mask"
    rows, rng = [], np.random.default_rng(0)
    for pid, gender, age in PEOPLE:
        path = f"{pid}_{gender.lower()}_Asian_{age}"
        folder = root / "train" / "images" / path
        folder.mkdir(parents=True)
        for name in FILES:
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(folder / name)
        (folder / "._mask1.jpg").write_bytes(b"macOS resource fork, not an image")  # dot files are skipped
        rows.append(f"{pid},{gender},Asian,{age},{path}")
    (root / "train" / "train.csv").write_text("id,gender,race,age,path\n" + "\n".join(rows) + "\n")
    ids = [f"eval_{i:02d}.jpg" for i in (5, 2, 9, 0, 7)]  # info.csv order is not sorted
    (root / "eval" / "images").mkdir(parents=True)
    for image_id in ids:
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / "eval" / "images" / image_id)
    (root / "eval" / "info.csv").write_text("ImageID,ans\n" + "".join(f"{i},0\n" for i in ids))
    return root



# ---- figures that integration tests measure, printed at the end of the run ----
_FIGURES: list[str] = []


@pytest.fixture
def report_figure():
    """Call with a line of measured figures; it is printed in pytest's terminal summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def mlflow_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


# ---- a real S3 API server (moto_server) on 127.0.0.1, shared by the tests that use a bucket ----
class S3:
    """moto's S3 server: `endpoint`, the env its clients need, and helpers to make and read buckets."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        # credentials as a user would give them; moto takes any. The endpoint is the test's choice to add.
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def query(self) -> str:
        """pyarrow's own form of an endpoint in the URI: ?endpoint_override=HOST:PORT&scheme=http."""
        return f"?endpoint_override={self.endpoint.removeprefix('http://')}&scheme=http"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One moto_server for the session (`moto[server]`, a real HTTP S3 API, not moto's in-process mocks)."""
    import shutil
    import subprocess

    if shutil.which("moto_server") is None:
        pytest.skip("moto_server not installed (pip install -e '.[dev]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{endpoint}/moto-api/", "moto_server", seconds=60)
        yield S3(endpoint)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The session's S3 server, with credentials in the environment (the endpoint is each test's to give)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return s3_server


def pytest_collection_modifyitems(config, items):
    """A test under tests/integration is an integration test (`-m "not integration"`: the unit path)."""
    for item in items:
        if "integration" in item.path.parent.parts:
            item.add_marker(pytest.mark.integration)
