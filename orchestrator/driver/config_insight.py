"""After the grid, per config: what its OOF predictions over all its folds say, logged under its trials' runs.

For each config with a trial in this invocation: the per-class table (an MLflow
table), a page of its worst classes and most confused pairs, a confusion figure that
names its classes (or, with more classes than a matrix can name, the top confused
pairs), and a gallery of its most confident mistakes. For the best
`insight.gradcam_configs` configs, Grad-CAM overlays of the mistakes of their best
fold, drawn by a Ray task where the model is loaded (a model Grad-CAM cannot
handle gets a note). Every fold's run of a config holds the same `insight/` files, so
whichever run a person opens shows its config. Nothing here can fail the grid.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.config import InsightConfig
from orchestrator.data.tables import multi_hot
from orchestrator.driver.trials import TrialRecord
from orchestrator.layout import RunFiles
from orchestrator.tracking import insight, plots
from orchestrator.tracking.class_report import ClassReport
from orchestrator.tracking.mlflow_store import Tracker
from orchestrator.tracking.tag_report import TagReport, wrong_rows

THUMBNAIL = 160  # px: the gallery's images, downsized (the figure, not the data)
CAM_TIMEOUT_S = 600  # a Grad-CAM task that cannot get a worker (a cluster that shrank) must not hold the grid's end


class ConfigInsight:
    def __init__(self, tracker: Tracker, classes: list[str], train_rows: pd.DataFrame, cfg: InsightConfig,
                 explain: Callable[..., Any] | None = None, fetch: Callable[[Any], Any] | None = None):
        """`train_rows`: the train table (row_id, image_path); `explain(trial config dict, checkpoint, paths,
        classes)`: a Ray object ref of Grad-CAM overlays (None: no Grad-CAM); `fetch`: ref -> value (ray.get)."""
        self.tracker, self.classes, self.cfg, self.explain, self.fetch = tracker, classes, cfg, explain, fetch
        self.paths = train_rows.set_index("row_id")["image_path"]
        self.frames: dict[str, pd.DataFrame] = {}  # run id -> its OOF frame, downloaded once

    def run(self, records: list[TrialRecord], ranked: list[str], mode: str) -> list[str]:
        """Analyse the configs of `records` that trained here (best first, as `ranked` orders config ids);
        returns one line per thing skipped or failed."""
        configs: dict[str, list[TrialRecord]] = defaultdict(list)
        for record in records:
            configs[record.planned.config.config_id].append(record)
        todo = [cid for cid in ranked if cid in configs and any(not r.reused for r in configs[cid])
                and any(r.predictions for r in configs[cid])]
        notes: list[str] = []
        cams = {cid: self._submit_cam(configs[cid], mode, notes) for cid in todo[: self.cfg.gradcam_configs]}
        for cid in todo:
            try:
                self._analyse(cid, configs[cid])
            except Exception:  # noqa: BLE001 - insight is a view on results; it never costs them
                notes.append(f"insight for config {cid} failed:\n{traceback.format_exc(limit=3)}")
        for cid, (record, mistakes, ref) in ((c, v) for c, v in cams.items() if v is not None):
            notes += self._log_cam(cid, configs[cid], record, mistakes, ref)
        return notes

    # ---------------------------------------------------------------- tables

    def _analyse(self, cid: str, group: list[TrialRecord]) -> None:
        folds = [r for r in group if r.predictions and r.run_id]
        oof = pd.concat([self._oof(r.run_id) for r in folds], ignore_index=True)
        title = (f"config {cid} ({group[0].planned.config.model.name}), OOF over folds "
                 f"{sorted(r.planned.config.fold for r in folds)} ({len(oof)} rows)")
        if "tags" in oof.columns:
            self._analyse_tags(cid, group, oof, title)
            return
        targets, predicted = insight.outcomes(oof)
        report = ClassReport.of(targets, predicted, self.classes, self.cfg.top_confusions, title, f"config {cid}")
        runs = [r.run_id for r in group if r.run_id]
        for run_id in runs:
            report.log(self.tracker, run_id)
        gallery = self._gallery(oof, cid) if self.cfg.gallery else None  # after the report: an unreadable image costs only this
        for run_id in runs if gallery is not None else ():
            self.tracker.log_figure(run_id, gallery, RunFiles.GALLERY)

    def _analyse_tags(self, cid: str, group: list[TrialRecord], oof: pd.DataFrame, title: str) -> None:
        """A multilabel config: the per-tag report at 0.5 (the ensemble's tuned thresholds are its run's), and a
        gallery of the images with the most wrong tags."""
        hot, probs = multi_hot(oof["tags"], len(self.classes)), insight.probabilities(oof)
        report = TagReport.of(hot, probs, self.classes, 0.5, f"{title}, tags called at 0.5", f"config {cid}")
        runs = [r.run_id for r in group if r.run_id]
        for run_id in runs:
            report.log(self.tracker, run_id)
        if not self.cfg.gallery:
            return
        worst = wrong_rows(oof["row_id"].to_numpy(), oof["fold"].to_numpy(), hot, probs, probs >= 0.5, self.classes,
                           self.cfg.gallery)
        if worst.empty:
            return
        captions = [f"missed: {m or '-'}\nextra: {e or '-'}\nrow {r}, fold {f}"
                    for m, e, r, f in zip(worst["missed"], worst["extra"], worst["row_id"], worst["fold"])]
        figure = plots.gallery_figure([_thumbnail(self.paths[row]) for row in worst["row_id"]], captions,
                                      f"config {cid}: its {len(worst)} OOF images with the most wrong tags")
        for run_id in runs:
            self.tracker.log_figure(run_id, figure, RunFiles.GALLERY)

    def _oof(self, run_id: str) -> pd.DataFrame:
        if run_id not in self.frames:
            self.frames[run_id] = self.tracker.load_frame(run_id, RunFiles.OOF)
        return self.frames[run_id]

    def _gallery(self, oof: pd.DataFrame, cid: str) -> Any:
        worst = insight.worst_mistakes(oof, self.cfg.gallery)
        if worst.empty:
            return None
        images = [_thumbnail(self.paths[row]) for row in worst["row_id"]]
        return plots.gallery_figure(images, self._captions(worst), f"config {cid}: its {len(worst)} most confident OOF mistakes")

    def _captions(self, worst: pd.DataFrame) -> list[str]:
        return [f"true: {self.classes[t]}\npredicted: {self.classes[p]} ({c:.2f})\nrow {r}, fold {f}"
                for t, p, c, r, f in zip(worst["target"], worst["predicted"], worst["confidence"], worst["row_id"], worst["fold"])]

    # -------------------------------------------------------------- Grad-CAM

    def _submit_cam(self, group: list[TrialRecord], mode: str, notes: list[str]) -> tuple | None:
        """The config's best fold explains its own most confident mistakes (rows its model never trained on)."""
        scored = [r for r in group if r.best_checkpoint and r.best is not None and r.run_id and r.predictions]
        if self.explain is None or not scored:
            return None
        record = (max if mode == "max" else min)(scored, key=lambda r: r.best)
        try:
            if "tags" in self._oof(record.run_id).columns:  # a tag has no one mistaken class to explain
                notes.append(f"Grad-CAM for config {record.planned.config.config_id}: not drawn for a multilabel task")
                return None
            mistakes = insight.worst_mistakes(self._oof(record.run_id), self.cfg.gradcam_images)
            if mistakes.empty:
                return None
            paths = [str(self.paths[row]) for row in mistakes["row_id"]]
            ref = self.explain(record.planned.config.model_dump(mode="json"), record.best_checkpoint, paths,
                               mistakes["predicted"].tolist())
            return record, mistakes, ref
        except Exception as err:  # noqa: BLE001
            notes.append(f"Grad-CAM for {record.key} not started: {err}")
            return None

    def _log_cam(self, cid: str, group: list[TrialRecord], record: TrialRecord, mistakes: pd.DataFrame, ref: Any) -> list[str]:
        if self.fetch is None:
            import functools

            import ray

            self.fetch = functools.partial(ray.get, timeout=CAM_TIMEOUT_S)
        try:
            overlays = self.fetch(ref)
            figure = plots.gallery_figure(overlays, self._captions(mistakes),
                                          f"config {cid}, fold {record.planned.config.fold}: Grad-CAM of the predicted class")
            for run in (r for r in group if r.run_id):
                self.tracker.log_figure(run.run_id, figure, RunFiles.GRADCAM)
        except Exception as err:  # noqa: BLE001 - e.g. CamUnsupported: a model Grad-CAM cannot explain
            cause = getattr(err, "cause", None) or err
            text = str(cause).strip().splitlines()
            return [(f"Grad-CAM skipped for config {cid} ({record.planned.config.model.name}): "
                     f"{type(cause).__name__}: {text[-1][:300] if text else ''}")]
        return []


def _thumbnail(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        return np.asarray(image)
