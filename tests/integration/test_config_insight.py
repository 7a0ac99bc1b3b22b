"""The driver's insight step on a real (sqlite) MLflow store (no Ray: the Grad-CAM task is stood in for):
every fold's run of a config gets the config's insight, and what cannot be drawn is a note, never an error."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from orchestrator.config import InsightConfig, TrialTables, parse_grid
from orchestrator.driver.config_insight import ConfigInsight
from orchestrator.driver.trials import TrialBook
from orchestrator.protocol import TrialStatus
from orchestrator.search.plan import plan_trials
from orchestrator.tracking.mlflow_store import Tracker
from orchestrator.train.explain import CamUnsupported

CLASSES = ["ant", "bee", "cat"]


def finished_book(minimal_grid, tracker: Tracker) -> TrialBook:
    """2 configs x 2 folds whose runs hold OOF frames (6 rows per fold, random probabilities)."""
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}}
    minimal_grid["data"]["folds"]["use"] = [0, 1]
    plan = plan_trials(parse_grid(minimal_grid), TrialTables(folds_path="f", test_path=None, num_classes=3))
    rng = np.random.default_rng(0)
    book = TrialBook(plan)
    for record in book.records.values():
        fold = record.planned.config.fold
        rows = np.arange(fold * 6, fold * 6 + 6)
        probs = rng.dirichlet([1, 1, 1], len(rows))
        oof = pd.DataFrame({"row_id": rows, "fold": fold, "target": rows % 3, **{f"prob_{k}": probs[:, k] for k in range(3)}})
        record.run_id = tracker.start_run(record.key, "trial")
        tracker.log_frames(record.run_id, {"oof": oof})
        record.status, record.predictions, record.best, record.best_checkpoint = TrialStatus.FINISHED, True, 0.5, "ckpt"
    return book


def images(folder, missing: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    paths = [str(folder / f"{row}.png") for row in range(12)]
    for path in paths if not missing else ():
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(path)
    return pd.DataFrame({"row_id": range(12), "image_path": paths})


def insight_files(tracker: Tracker, run_id: str) -> set[str]:
    return {a.path.removeprefix("insight/") for a in tracker.client.list_artifacts(run_id, "insight")}


def test_each_config_gets_its_insight_and_an_unexplainable_model_a_note(tmp_path, minimal_grid):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "insight")
    book = finished_book(minimal_grid, tracker)

    def unexplainable(ref):
        raise CamUnsupported("no layer here")

    asked = []
    insight = ConfigInsight(tracker, CLASSES, images(tmp_path), InsightConfig(gallery=4, gradcam_configs=1),
                            explain=lambda *args: asked.append(args) or "ref", fetch=unexplainable)
    configs = list(dict.fromkeys(r.planned.config.config_id for r in book.records.values()))
    notes = insight.run(list(book.records.values()), configs, "max")

    assert len(asked) == 1 and asked[0][1] == "ckpt"  # the best config's best fold, from its checkpoint
    assert len(notes) == 1 and "Grad-CAM skipped" in notes[0] and "CamUnsupported: no layer here" in notes[0]
    for record in book.records.values():
        assert insight_files(tracker, record.run_id) == {"per_class.json", "mistakes.txt", "confusion.png", "gallery.png"}
    page = tracker.load_text(next(iter(book.records.values())).run_id, "insight/mistakes.txt")
    assert "OOF over folds [0, 1] (12 rows)" in page and "3 classes, 12 rows" in page

    broken = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "insight-no-images")  # the images gone since the grid ran
    book = finished_book(minimal_grid, broken)
    notes = ConfigInsight(broken, CLASSES, images(tmp_path / "gone", missing=True), InsightConfig(gallery=4,
                          gradcam_configs=0)).run(list(book.records.values()), configs, "max")
    assert len(notes) == 2 and all("failed" in n and "No such file" in n for n in notes)  # one note per config
    for record in book.records.values():  # the report came first: only the gallery is missing
        assert insight_files(broken, record.run_id) == {"per_class.json", "mistakes.txt", "confusion.png"}
