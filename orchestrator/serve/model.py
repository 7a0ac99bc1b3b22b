"""The ensemble as a model: images in, blended class probabilities and the top classes out.

`Ensemble` loads a bundle (serve/bundle.py) and predicts without MLflow;
`EnsembleModel` is its MLflow pyfunc face, what `mlflow models serve`, the
registry and `python -m orchestrator.predict` load. Every fold model sees an image
exactly as its trial's test predictions did (`eval_pipeline`: the same framing,
eval transform, normalisation and TTA views), so the grid's own test set gives the
submission the ensemble job wrote.

Input: a DataFrame with a column `image_path` (files on the host that runs the
model) or `image` (base64-encoded file bytes, for remote clients). Output: `target`,
`class_name`, then `top1_class`, `top1_prob`, ... up to `topk` (a param, default 5); a
multilabel task's model adds `tags` after `class_name` (the tags over their tuned
thresholds, space-separated) and its probabilities are per tag (a sigmoid each).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

DEFAULTS = {"topk": 5, "batch_size": 64, "device": "auto", "workers": 0}  # the params a call may set


class ImageInputError(ValueError):
    """A row whose image cannot be read; the message names the row."""


def image_sources(frame: pd.DataFrame) -> list[Any]:
    """One source per row: a path (`image_path`) or a file object of the decoded base64 (`image`).

    Every image is opened here, so a bad row fails the call before any model runs,
    with its row number, instead of mid-batch.
    """
    from PIL import Image, UnidentifiedImageError

    column = "image_path" if "image_path" in frame.columns else "image" if "image" in frame.columns else None
    if column is None:
        raise ImageInputError(f"the input needs a column 'image_path' (files on this host) or 'image' (base64 bytes); "
                              f"it has {list(frame.columns)}")
    sources = []
    for row, value in enumerate(frame[column].tolist()):
        try:
            source = _source(value, column)
            with Image.open(source) as image:
                image.verify()  # the whole file: a truncated upload fails here, not in a loader worker
            if not isinstance(source, str):
                source.seek(0)
        except Exception as err:  # noqa: BLE001 - PIL, base64 and the OS raise many kinds; the row is what matters
            shown = value if column == "image_path" else f"{str(value)[:20]}..."
            reason = "not an image file PIL can open" if isinstance(err, UnidentifiedImageError) else err
            raise ImageInputError(f"row {row}: cannot read {column} {shown!r}: {reason}") from None
        sources.append(source)
    return sources


def _source(value: Any, column: str) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("empty or not a string")
    if column == "image_path":
        return value
    try:
        return io.BytesIO(base64.b64decode(value, validate=True))
    except binascii.Error as err:
        raise ValueError(f"not base64 ({err})") from None


class Ensemble:
    """A bundle's fold models in memory, grouped by how they frame an image (one decode per group)."""

    def __init__(self, folder: str | Path, device: str = "auto"):
        import torch

        from orchestrator.config import TrialConfig
        from orchestrator.data.transforms import Normalize
        from orchestrator.serve.bundle import EnsembleSpec
        from orchestrator.train.checkpoint import load_weights
        from orchestrator.train.models import create_model, normalization
        from orchestrator.train.setup import eval_pipeline

        folder = Path(folder)
        self.spec = EnsembleSpec.load(folder)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.groups: dict[str, dict[str, Any]] = {}  # framing key -> {read, transform, models: [(member, trial, model, normalize)]}
        for index, member in enumerate(self.spec.members):
            for key, share in zip(member.folds, member.model_shares()):
                trial = TrialConfig.model_validate_json((folder / key / "trial_config.json").read_text())
                model = create_model(trial.model.name, len(self.spec.classes), pretrained=False, heads=trial.model.heads)
                load_weights(folder / key, model)
                model.to(self.device).eval()
                read, transform = eval_pipeline(trial)
                group = self.groups.setdefault(_framing_key(trial), {"read": read, "transform": transform, "models": []})
                group["models"].append((index, share, trial, model, Normalize(*normalization(model))))

    def probabilities(self, sources: list[Any], batch_size: int = 64, workers: int = 0) -> np.ndarray:
        """(rows, classes): each member's models (its folds, and its refit) combined by their shares, blended with
        the member weights as the ensemble job blends (hard votes for `vote`), shifted by the macro-F1 offsets when
        the job kept them."""
        import torch

        from orchestrator.blend import blend, shift
        from orchestrator.data.dataset import ImageDataset
        from orchestrator.train.predict import batch_probs

        members = self.spec.members
        sums = np.zeros((len(members), len(sources), len(self.spec.classes)))
        for group in self.groups.values():
            data = ImageDataset(sources, None, group["transform"], read=group["read"])
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers)
            start = 0
            for images, _ in loader:
                for index, share, trial, model, normalize in group["models"]:
                    probs = batch_probs(model, images, self.device, trial.tta, normalize, trial.data.task).numpy()
                    sums[index, start:start + len(images)] += share * probs
                start += len(images)
        return shift(blend(list(sums), np.array([m.weight for m in members]), self.spec.method), self.spec.offsets)


def _framing_key(trial) -> str:
    """Fold models whose trials frame an image the same way share one decode of it."""
    return f"{trial.data.image_size}|{trial.data.invert}|{trial.data.cache}|{trial.train.augment}"


def top_classes(probs: np.ndarray, classes: list[str], topk: int) -> pd.DataFrame:
    """target, class_name, top{i}_class, top{i}_prob for i = 1..topk (at most the number of classes)."""
    k = max(1, min(int(topk), len(classes)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = np.asarray(classes, dtype=object)
    out = {"target": order[:, 0].astype(np.int64), "class_name": names[order[:, 0]]}
    for i in range(k):
        out[f"top{i + 1}_class"] = names[order[:, i]]
        out[f"top{i + 1}_prob"] = np.take_along_axis(probs, order[:, i:i + 1], axis=1)[:, 0].astype(np.float64)
    return pd.DataFrame(out)


def called_tags(probs: np.ndarray, spec) -> list[str]:
    """Each row's tags over their thresholds, space-separated (the ensemble job's decision)."""
    from orchestrator.blend import decide

    names = np.asarray(spec.classes, dtype=object)
    return [" ".join(names[row]) for row in decide(probs, np.asarray(spec.thresholds), spec.at_least_one)]


class EnsembleModel(PythonModel):
    """MLflow pyfunc: the `bundle` artifact, loaded once; `predict` as described in the module docstring."""

    def load_context(self, context) -> None:
        self.folder = context.artifacts["bundle"]
        self.ensembles: dict[str, Ensemble] = {}

    def ensemble(self, device: str) -> Ensemble:
        if device not in self.ensembles:
            self.ensembles[device] = Ensemble(self.folder, device)
        return self.ensembles[device]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        settings = {**DEFAULTS, **(params or {})}
        try:
            sources = image_sources(pd.DataFrame(model_input))
        except ImageInputError as err:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        ensemble = self.ensemble(str(settings["device"]))
        probs = ensemble.probabilities(sources, int(settings["batch_size"]), int(settings["workers"]))
        out = top_classes(probs, ensemble.spec.classes, int(settings["topk"]))
        if ensemble.spec.multilabel:
            out.insert(2, "tags", called_tags(probs, ensemble.spec))
        return out
