"""`python -m orchestrator.predict MODEL INPUT --output preds.csv`: a logged ensemble on new images.

MODEL: a grid.yaml (the model its ensemble job registered: models:/<name>@<ensemble.alias>,
in the grid's tracking store), or an MLflow model URI (models:/name@alias, models:/name/3,
runs:/<run id>/model) in --tracking-uri.
INPUT: a folder of images (searched recursively), a CSV with an `image_path` column
(relative to the CSV's folder), or a competition data root (csv: the model's test CSV,
e.g. sample_submission.csv, + test_images/; sketch_csv: test.csv + test/; mask:
eval/info.csv + eval/images/), for which `--format submission` writes the competition's
submission file (the csv source's: the test CSV's columns and row order).

Output rows: image_path (as INPUT names it), target, class_name, top1_class, top1_prob, ...
The model is the same pyfunc that `mlflow models serve` serves (orchestrator/serve/model.py).
`--address` shards the images over a Ray cluster's GPUs (or CPUs) and writes one file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.cli import EXIT_OK, main_guard, parse_override
from orchestrator.console import quiet_libraries
from orchestrator.errors import InputError

CHUNK_BATCHES = 8  # images per model call = batch size x this: the progress bar moves per call


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a grid.yaml, or an MLflow model URI (models:/..., runs:/...)")
    parser.add_argument("input", help="an image, a folder of images, a CSV with image_path, or a competition data root")
    parser.add_argument("--output", default="preds.csv", help="where the CSV goes (default: preds.csv)")
    parser.add_argument("--format", choices=["rows", "submission"], default="rows",
                        help="rows: one row per image with the top classes; submission: the competition's file")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1 ...")
    parser.add_argument("--workers", type=int, default=0, help="image decoding processes (0: in this one)")
    parser.add_argument("--tracking-uri", default=None, help="for a model URI (default: MLFLOW_TRACKING_URI, else "
                                                             "sqlite:///mlflow.db)")
    parser.add_argument("--address", default=None,
                        help="a Ray cluster (auto, host:port, local: a new one here): the images are split into one "
                             "shard per GPU (else per CPU) and predicted in Ray tasks; every node must reach the images "
                             "and the tracking store")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a grid key")
    parser.add_argument("--verbose", action="store_true", help="MLflow's INFO lines too")
    return parser.parse_args(argv)


def resolve_model(model: str, tracking_uri: str | None, overrides: list[str]) -> tuple[str, str]:
    """(model URI, tracking URI) for MODEL."""
    import os

    if model.endswith((".yaml", ".yml")):
        from orchestrator.config import load_grid

        grid = load_grid(model, [parse_override(s) for s in overrides])
        return f"models:/{grid.name}@{grid.ensemble.alias}", grid.tracking.uri
    if not model.startswith(("models:/", "runs:/")):
        raise InputError(f"MODEL {model!r}: give a grid.yaml or an MLflow model URI (models:/name@alias, runs:/id/model)")
    return model, tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def load_model(uri: str, tracking_uri: str, given: str):
    """The pyfunc model; `given`: MODEL as the user gave it (a grid file, or the URI), for the message."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises its own kinds for a missing model, alias or run
        grid = given if given.endswith((".yaml", ".yml")) else "GRID.yaml"
        raise InputError(f"MODEL {uri} in {tracking_uri}: cannot load it ({str(err).splitlines()[0]}); run "
                         f"`python -m orchestrator.ensemble {grid}` first, or check the URI") from None


def model_format(uri: str, tracking_uri: str, given: str):
    """The csv source's submission format the model carries in its metadata (None for the other sources), read
    without loading the model."""
    import mlflow

    from orchestrator.data.submission import SubmissionFormat

    mlflow.set_tracking_uri(tracking_uri)
    try:
        metadata = mlflow.models.get_model_info(uri).metadata or {}
    except Exception:
        load_model(uri, tracking_uri, given)
        raise
    return SubmissionFormat.from_json(metadata.get("submission"))


def class_probabilities(out, classes: list[str]):
    """(rows, classes) probabilities from the model's top-k columns (k = every class)."""
    import numpy as np

    probs = np.zeros((len(out), len(classes)))
    index = {name: k for k, name in enumerate(classes)}
    for i in range(1, len(classes) + 1):
        columns = out[f"top{i}_class"].map(index).to_numpy()
        probs[np.arange(len(out)), columns] = out[f"top{i}_prob"].to_numpy()
    return probs


def decisions(out, classes: list[str]):
    """The model's decision per row: its class index, or a multilabel model's called tags (rows, tags) bool."""
    from orchestrator.data.tables import hot_of_names

    if "tags" not in out.columns:
        return out["target"].to_numpy()
    return hot_of_names(out["tags"].tolist(), classes) > 0


def predict_rows(model, rows, params: dict, given: str = "INPUT"):
    """The model's output for every row, in chunks, with a progress bar; a bad image is an InputError naming it
    (`given`: INPUT as the user gave it)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from orchestrator.console import progress

    chunk = params["batch_size"] * CHUNK_BATCHES
    parts = []
    with progress(len(rows), "predicting", "img", sys.stderr) as bar:
        for start in range(0, len(rows), chunk):
            part = rows.iloc[start:start + chunk]
            try:
                parts.append(model.predict(pd.DataFrame({"image_path": part["image_path"].tolist()}), params=params))
            except MlflowException as err:
                raise InputError(f"{err.message} (row numbers count from image {start} of {given})") from None
            bar.update(len(part))
    return pd.concat(parts, ignore_index=True)


def predict_on_ray(address: str, uri: str, tracking_uri: str, rows, params: dict):
    """The model's output for every row from Ray tasks, one shard each (rows in order); one GPU or CPU per task."""
    import numpy as np
    import pandas as pd
    import ray

    from orchestrator.console import progress

    ray.init(address=address, log_to_driver=False, configure_logging=True, logging_level="WARNING")
    try:
        totals = ray.cluster_resources()
        gpu = totals.get("GPU", 0) >= 1 and params["device"] != "cpu"
        slots = int(totals.get("GPU", 0)) if gpu else max(1, int(totals.get("CPU", 1)))
        shards = np.array_split(rows["image_path"].to_numpy(), max(1, min(slots, len(rows) // params["batch_size"])))

        @ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=1)
        def shard(paths: list[str]) -> pd.DataFrame:
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            return mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image_path": paths}), params=params)

        refs = [shard.remote(list(paths)) for paths in shards]
        with progress(len(rows), f"predicting ({len(refs)} Ray tasks)", "img", sys.stderr) as bar:
            pending = {ref: len(paths) for ref, paths in zip(refs, shards)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                bar.update(pending.pop(done[0]))
        return pd.concat(ray.get(refs), ignore_index=True)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    import time

    from orchestrator.serve.inputs import read_inputs

    args = parse_args(argv)
    quiet_libraries(args.verbose)
    uri, tracking_uri = resolve_model(args.model, args.tracking_uri, args.set)
    inputs = read_inputs(args.input, lambda: model_format(uri, tracking_uri, args.model))
    if args.format == "submission" and not inputs.writes_submission:
        raise InputError(f"--format submission needs a competition data root (the csv source's test CSV + test "
                         f"images, test.csv + test/, or eval/info.csv), a test folder or an image; {args.input} is a "
                         f"{inputs.kind.split(' ')[0]}")
    print(f"{len(inputs.rows)} images from {inputs.kind}; model {uri} ({tracking_uri})", file=sys.stderr, flush=True)
    model = load_model(uri, tracking_uri, args.model)
    classes = list(model.metadata.metadata["classes"])
    every_class = args.format == "submission" and inputs.format is not None  # its writer takes every probability
    params = {"topk": len(classes) if every_class else args.topk, "batch_size": args.batch_size, "device": args.device,
              "workers": args.workers}
    if args.address:
        device, start = f"Ray at {args.address}", time.monotonic()
        out = predict_on_ray(args.address, uri, tracking_uri, inputs.rows, params)
    else:
        device = model.unwrap_python_model().ensemble(args.device).device  # the fold models load here, before the clock
        start = time.monotonic()
        out = predict_rows(model, inputs.rows, params, args.input)
    seconds = time.monotonic() - start
    if args.format == "submission" and inputs.format is not None:
        frame = inputs.format.write(inputs.rows["rel_path"].to_numpy(), class_probabilities(out, classes),
                                    decisions(out, classes), classes)
    elif args.format == "submission":
        frame = inputs.submission(inputs.rows, out["target"].to_numpy(), classes)
    else:
        frame = out.copy()
        frame.insert(0, "image_path", inputs.rows["rel_path"].to_numpy())
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    print(f"{output}: {len(frame)} rows ({len(out) / max(seconds, 1e-9):.0f} img/s on {device})", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main_guard(main))
