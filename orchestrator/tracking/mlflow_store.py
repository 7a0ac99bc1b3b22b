"""MLflow layout: experiment = grid name, a parent run per invocation, a child run per trial.

Only the driver talks to MLflow (through `Tracker`): one writer keeps the default
sqlite store free of lock contention, and trials on remote nodes need no route to
the tracking server. During the grid the driver's writes go through
tracking/writer.py (a thread and a journal), so a server that is away never
holds up Tune's event loop.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.protocol import TrialStatus

ROLE = "orchestrator.role"  # tag: grid | trial | ensemble
PARENT = "mlflow.parentRunId"  # MLflow's own tag: nests children under the parent in the UI
NOTE = "mlflow.note.content"  # MLflow's own tag: the run's markdown description
# MLflow 3's UI opens an experiment of unknown kind on its GenAI overview (traces); this kind opens it on the runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
SEARCH_PREFIX = "search."  # a trial's searched values as params: what compare views should list


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"optimizer": {"lr": 0.1}}} -> {"train.optimizer.lr": "0.1"}."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def default_artifact_root(uri: str) -> str | None:
    """Beside a local sqlite db, as an absolute path: Ray moves workers' working dirs."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent.resolve() / "mlartifacts").as_uri()
    return None  # a tracking server decides (proxied artifacts)


def runs_page(base: str, experiment_id: str) -> str:
    """The experiment's runs table in MLflow's UI. MLflow 3.17's UI opens every experiment in its global
    "GenAI" mode (traces) unless told otherwise, whatever its `mlflow.experimentKind`; the link says
    "model training" (the UI then remembers it)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_command(uri: str, experiment_id: str) -> str:
    """How to see the runs: the server's page, or the `mlflow ui` command and its page, on the host and port that
    `mlflow ui` itself takes from the environment (MLFLOW_HOST, MLFLOW_PORT; else 127.0.0.1:5000)."""
    if uri.startswith(("http://", "https://")):
        return f"open {runs_page(uri, experiment_id)} (the MLflow server)"
    host, port = os.environ.get("MLFLOW_HOST", "127.0.0.1"), os.environ.get("MLFLOW_PORT", "5000")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return (f"mlflow ui --backend-store-uri {uri} --host {host} --port {port}, then open "
            f"{runs_page(f'http://{shown}:{port}', experiment_id)}")


class Tracker:
    """Thin wrapper over MlflowClient for this project's run layout."""

    def __init__(self, uri: str, experiment: str, artifact_root: str | None = None, create: bool = True):
        """`create`: make the experiment when it does not exist (the grid's run); else (commands that only read
        it) an InputError, so a command run too early leaves no empty experiment behind, and nothing is written."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file is noise
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a link per ended run too: the tool
        # prints the experiment's link once
        from mlflow.tracking import MlflowClient

        self.uri, self.experiment_name = uri, experiment
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            from orchestrator.errors import InputError

            raise InputError(f"name: MLflow ({uri}) has no experiment {experiment!r}: run the grid first "
                             f"(python -m orchestrator.run GRID.yaml), or check name and tracking.uri")
        if found is None:
            location = artifact_root or default_artifact_root(uri)
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        if create and (found is None or found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]):
            self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)

    # ------------------------------------------------------------------ runs

    def start_run(self, name: str, role: str, tags: dict[str, str] | None = None, parent_id: str | None = None) -> str:
        all_tags = {ROLE: role, **(tags or {})}
        if parent_id:
            all_tags[PARENT] = parent_id
        return self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id

    def reopen_run(self, run_id: str, tags: dict[str, str] | None = None) -> None:
        """Continue an earlier run (resume): RUNNING again, same id, same history."""
        self.client.update_run(run_id, status=str(TrialStatus.RUNNING))
        self.set_tags(run_id, tags or {})

    def end_run(self, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
        self.set_tags(run_id, tags or {})
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """`timestamp_ms`: when they were measured (default now); the same batch logged twice is kept once."""
        from mlflow.entities import Metric

        now = timestamp_ms or int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def describe(self, run_id: str, markdown: str) -> None:
        """The run's description (the markdown MLflow shows on the run page and as the runs table's tooltip)."""
        self.client.set_tag(run_id, NOTE, markdown)

    def log_datasets(self, run_id: str, datasets: list[Any]) -> None:
        """Dataset inputs (`dataset_input`) of a run: what the UI's Datasets column shows."""
        if datasets:
            self.client.log_inputs(run_id, datasets=datasets)

    # ------------------------------------------------------------- artifacts

    def log_file(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def log_stored_file(self, run_id: str, path: str, folder: str | None = None) -> None:
        """A file of the grid's storage (a path or a bucket URI) logged as an artifact, downloaded first when remote
        (the writer thread's work: Tune's event loop never waits for a bucket)."""
        from orchestrator.storage import copy_to_local, is_uri, without_query

        if not is_uri(path):
            self.client.log_artifact(run_id, path, folder)
            return
        with tempfile.TemporaryDirectory() as local:
            target = Path(local) / Path(without_query(path)).name
            copy_to_local(path, target)
            self.client.log_artifact(run_id, str(target), folder)

    def log_confusion(self, run_id: str, targets: list[int], predicted: list[int], classes: list[str], top: int,
                      title: str, name: str) -> None:
        """The confusion figure of (targets, predicted), drawn here (in the writer's thread, off Tune's loop)."""
        import numpy as np

        from orchestrator.tracking.insight import confused_pairs
        from orchestrator.tracking.plots import confusion_figure

        targets, predicted = np.asarray(targets), np.asarray(predicted)
        figure = confusion_figure(targets, predicted, classes, confused_pairs(targets, predicted, classes, top), title)
        self.client.log_figure(run_id, figure, name)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def log_frames(self, run_id: str, frames: dict[str, pd.DataFrame], folder: str | None = None) -> None:
        """Each frame as `<name>.parquet` in the run's artifact `folder` (default: its root)."""
        with tempfile.TemporaryDirectory() as local:
            for name, frame in frames.items():
                path = Path(local) / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                self.log_file(run_id, path, folder)

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        self.client.log_figure(run_id, figure, name)

    def log_table(self, run_id: str, frame: pd.DataFrame, name: str) -> None:
        """A table artifact in MLflow's own format (`log_table`'s JSON: columns + data), rewritten if it exists.

        (MlflowClient.log_table appends to an existing file; a rerun must replace it.)
        """
        self.log_text(run_id, frame.to_json(orient="split", index=False), name)
        logged = json.loads(self.client.get_run(run_id).data.tags.get("mlflow.loggedArtifacts", "[]"))
        if not any(entry.get("path") == name for entry in logged):  # the UI lists tables it finds here
            self.client.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(logged + [{"path": name, "type": "table"}]))

    def load_frame(self, run_id: str, name: str) -> pd.DataFrame:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as folder:
            path = download_artifacts(run_id=run_id, artifact_path=name, dst_path=folder, tracking_uri=self.uri)
            return pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)

    def load_text(self, run_id: str, name: str) -> str:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as folder:
            return Path(download_artifacts(run_id=run_id, artifact_path=name, dst_path=folder, tracking_uri=self.uri)).read_text()

    # --------------------------------------------------------------- queries

    def runs(self, role: str, extra_filter: str = "") -> list[Any]:
        """All runs of this experiment with the given role, newest first."""
        query = f"tags.`{ROLE}` = '{role}'" + (f" and {extra_filter}" if extra_filter else "")
        return list(self._search(query))

    def runs_tagged(self, key: str, value: str) -> list[Any]:
        """This experiment's runs whose tag `key` is `value` (any role)."""
        return list(self._search(f"tags.`{key}` = '{value}'"))

    def _search(self, query: str) -> Iterable[Any]:
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            yield from page
            token = page.token
            if not token:
                return


def dataset_input(frame: pd.DataFrame, name: str, source: str, context: str) -> Any:
    """`frame` as an MLflow dataset input (schema, row count and digest; the rows stay at `source`)."""
    import warnings

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # its hints on integer columns and ambiguous sources are for model signatures
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets="target" if "target" in frame else None)
        return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


def environment_tags() -> dict[str, str]:
    """Where and with what a run was made; cheap, and saves guessing later."""
    import platform

    import torch

    return {"host": platform.node(), "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "pid": str(os.getpid())}
