"""The driver's insight step on a real (sqlite) MLflow store (no Ray: the Grad-CAM task is stood in for): every fold's run of a config gets the config's
insight, and a model Grad-CAM cannot explain is a note, never an error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from orchestrator.config import InsightConfig, TrialTables, parse_grid
from orchestrator.protocol import TrialStatus
from orchestrator.search.plan import plan_trials
from orchestrator.tracking.config_insight import ConfigInsight
from orchestrator.tracking.mlflow_store import Tracker
from orchestrator.tracking.trials import TrialBook
from orchestrator.train.explain import CamUnsupported

CLASSES = ["ant", "bee", "cat"]


@pytest.mark.integration
def test_each_config_gets_its_insight_and_an_unexplainable_model_a_note(tmp_path, minimal_grid):
    minimal_grid["search"] = {"train.optimizer.lr": {"grid": [0.1, 0.01]}}
    minimal_grid["data"]["folds"]["use"] = [0, 1]
    plan = plan_trials(parse_grid(minimal_grid), TrialTables(folds_path="f", test_path=None, num_classes=3))
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "insight")
    rng = np.random.default_rng(0)
    paths = []
    for row in range(12):
        paths.append(str(tmp_path / f"{row}.png"))
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(paths[-1])
    book = TrialBook(plan)
    for record in book.records.values():
        fold = record.planned.config.fold
        rows = np.arange(fold * 6, fold * 6 + 6)
        probs = rng.dirichlet([1, 1, 1], len(rows))
        oof = pd.DataFrame({"row_id": rows, "fold": fold, "target": rows % 3, **{f"prob_{k}": probs[:, k] for k in range(3)}})
        record.run_id = tracker.start_run(record.key, "trial")
        tracker.log_frames(record.run_id, {"oof": oof})
        record.status, record.predictions, record.best, record.best_checkpoint = TrialStatus.FINISHED, True, 0.5, "ckpt"

    def unexplainable(ref):
        raise CamUnsupported("no layer here")

    asked = []
    insight = ConfigInsight(tracker, CLASSES, pd.DataFrame({"row_id": range(12), "image_path": paths}),
                            InsightConfig(gallery=4, gradcam_configs=1),
                            explain=lambda *args: asked.append(args) or "ref", fetch=unexplainable)
    configs = list(dict.fromkeys(p.config.config_id for p in plan))
    notes = insight.run(list(book.records.values()), configs, "max")

    assert len(asked) == 1 and asked[0][1] == "ckpt"  # the best config's best fold, from its checkpoint
    assert len(notes) == 1 and "Grad-CAM skipped" in notes[0] and "CamUnsupported: no layer here" in notes[0]
    for record in book.records.values():
        files = {a.path for a in tracker.client.list_artifacts(record.run_id, "insight")}
        assert files == {"insight/per_class.json", "insight/mistakes.txt", "insight/confusion.png", "insight/gallery.png"}
    page = tracker.load_text(next(iter(book.records.values())).run_id, "insight/mistakes.txt")
    assert "OOF over folds [0, 1] (12 rows)" in page and "3 classes, 12 rows" in page
