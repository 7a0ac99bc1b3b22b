"""What a person sees: `mlflow ui` on 127.0.0.1 over a finished 300-class grid, in headless Chromium.

The grid: 300 classes of synthetic doodles (a class count whose confusion matrix
cannot be read), one model, two learning rates, one fold. Checked in the browser:
the link the run prints opens the experiment on its training runs (with the data as
their dataset), a child run's artifacts hold the per-class table (class names in
it) and the gallery, the compare view lists the searched param and not the grid's
constants, and the grid's run carries its description. Installs Debian's chromium
with apt-get when it is missing and this runs as root (playwright drives it; no
browser download), and skips otherwise. `UI_SCREENSHOTS=<folder>` keeps the
screenshots there (docs/running.md's come from this test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import free_port, mlflow_runs, run_cli, wait_for_http, write_grid

CLASSES = 300
NAME = "ui-300"
MODE = "workflowType=machine_learning"  # MLflow 3.17's UI mode for training runs (else: GenAI, whatever the experiment)


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs Debian's chromium (apt-get install chromium, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=900)
    return shutil.which("chromium") or pytest.skip("apt-get installed chromium, but it is not on PATH")


def doodles(root: Path, per_class: int = 4) -> Path:
    """sketch_csv layout: `shape_NNN` classes, each a few strokes seeded by its index, jittered per image."""
    rows = []
    for k in range(CLASSES):
        strokes = np.random.default_rng(k).integers(2, 22, (3, 4))
        (root / "train" / f"shape_{k:03d}").mkdir(parents=True)
        for i in range(per_class):
            jitter = np.random.default_rng(1000 * k + i).integers(-1, 2, strokes.shape)
            image = Image.new("L", (24, 24), 255)
            draw = ImageDraw.Draw(image)
            for x0, y0, x1, y1 in (strokes + jitter).tolist():
                draw.line((x0, y0, x1, y1), fill=0, width=2)
            rel = f"shape_{k:03d}/{i}.png"
            image.save(root / "train" / rel)
            rows.append(f"shape_{k:03d},{rel},{k}")
    (root / "train.csv").write_text("class_name,image_path,target\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def finished_grid(tmp_path):
    grid = {"name": NAME, "seed": 3,
            "data": {"source": "sketch_csv", "root": str(doodles(tmp_path / "doodles")), "image_size": 16,
                     "folds": {"kind": "stratified", "n_splits": 2, "use": [0]}},
            "models": [{"name": "test_resnet"}], "search": {"train.optimizer.lr": {"grid": [3.0e-3, 1.0e-2]}},
            "train": {"epochs": 1, "batch_size": 64}, "scheduler": {"kind": "fifo"},
            "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
            "insight": {"gradcam_configs": 0, "gallery": 8}}  # (Grad-CAM: test_quickdraw_grid_asha_mlflow_ensemble)
    result = run_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    link = re.search(r"then open (http://\S+)", result.stdout).group(1)
    return tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", link


@pytest.fixture
def mlflow_ui(finished_grid):
    folder, uri, link = finished_grid
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", "mlflow ui", seconds=120)
        yield base, uri, link.replace("http://127.0.0.1:5000", base)
    finally:
        server.terminate()
        server.wait(30)


def check_the_artifacts_readable(uri: str, child) -> None:
    """The 300-class insight, read back from the store: named, and a figure a person can read."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    folder = Path(client.download_artifacts(child.info.run_id, "insight"))
    table = json.loads((folder / "per_class.json").read_text())
    assert len(table["data"]) == CLASSES and table["columns"][:2] == ["class_index", "class_name"]
    assert {row[1] for row in table["data"]} == {f"shape_{k:03d}" for k in range(CLASSES)}
    page = (folder / "mistakes.txt").read_text()
    assert re.search(r"^shape_\d{3}\s+shape_\d{3}\s+\d+\s+[\d.]+%$", page, re.M)  # a named pair
    with Image.open(folder / "confusion.png") as figure:  # the named top pairs, not a 300 x 300 matrix
        assert figure.height < 1500


def test_the_mlflow_ui_shows_training_runs_insight_and_searched_params(mlflow_ui, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [dev] extra)")
    chromium = ensure_chromium()
    base, uri, link = mlflow_ui
    runs = mlflow_runs(uri, NAME)
    children = sorted((r for r in runs if r.data.tags["orchestrator.role"] == "trial"), key=lambda r: r.info.run_name)
    (parent,) = [r for r in runs if r.data.tags["orchestrator.role"] == "grid"]
    assert len(children) == 2
    check_the_artifacts_readable(uri, children[0])
    shots = Path(os.environ.get("UI_SCREENSHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1500, "height": 950}).new_page()
        page.set_default_timeout(60_000)

        page.goto(link)  # the link the run printed: the experiment's training runs, not the GenAI overview
        page.wait_for_url(re.compile(r"#/experiments/\d+/runs\?"))
        page.get_by_role("link", name=parent.info.run_name, exact=True).wait_for()
        page.get_by_role("row").filter(has_text=parent.info.run_name).locator(
            'button[data-component-id$="runnamecellrenderer.tsx_46"]').first.click()  # unfold its trials
        for child in children:
            page.get_by_role("link", name=child.info.run_name, exact=True).wait_for()
        page.get_by_role("gridcell").filter(has_text=f"{NAME}-train").first.wait_for()  # the Datasets column
        page.screenshot(path=str(shots / "runs.png"))

        child = children[0]
        page.get_by_role("link", name=child.info.run_name, exact=True).click()  # as a person would: click through
        page.wait_for_url(re.compile(child.info.run_id))
        page.get_by_text("Artifacts", exact=True).first.click()
        page.locator('[data-testid="artifact-tree-node"][artifact-name="insight"]').wait_for()
        page.locator('[data-testid="artifact-tree-node"][artifact-name="insight"]').click()
        page.locator('[data-testid="artifact-tree-node"][artifact-name="gallery.png"]').wait_for()
        page.locator('[data-testid="artifact-tree-node"][artifact-name="per_class.json"]').click()
        page.get_by_text("shape_000", exact=True).first.wait_for()  # the table, with class names
        page.screenshot(path=str(shots / "per_class.png"))
        page.locator('[data-testid="artifact-tree-node"][artifact-name="gallery.png"]').click()
        page.locator('img[alt="insight/gallery.png"]').wait_for()
        page.screenshot(path=str(shots / "gallery.png"))
        page.get_by_text("System metrics", exact=True).first.click()  # sampled on the trial's worker, logged by the driver
        page.get_by_text(re.compile("cpu_utilization_percentage")).first.wait_for()
        page.locator(".js-plotly-plot").first.wait_for()  # a chart drawn (the tab polls: the network never idles)
        page.screenshot(path=str(shots / "system_metrics.png"))

        query = urllib.parse.urlencode({"runs": json.dumps([c.info.run_id for c in children]),
                                        "experiments": json.dumps([child.info.experiment_id])}) + f"&{MODE}"
        page.goto(f"{base}/#/compare-runs?{query}")
        page.get_by_text("Comparing 2 Runs from 1 Experiment").wait_for()
        page.get_by_role("row").filter(has=page.get_by_text("search.train.optimizer.lr", exact=True)).wait_for()
        assert page.get_by_text("train.batch_size", exact=True).count() == 0  # the grid's constants: on its own run
        page.screenshot(path=str(shots / "compare.png"), full_page=True)

        page.goto(f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}?{MODE}")
        page.get_by_text("Best config:").first.wait_for()  # the grid's description
        page.screenshot(path=str(shots / "grid_run.png"))
        browser.close()
