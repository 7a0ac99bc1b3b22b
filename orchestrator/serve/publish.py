"""Log the ensemble as an MLflow pyfunc model on the ensemble run, and register it under the grid's name."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

MODEL_NAME = "model"  # the logged model's name on the ensemble run
ENTRY = Path(__file__).with_name("entry.py")  # the model's code, logged as a file (not a pickled object)
# what the model imports when it loads (the orchestrator package travels with it as code)
REQUIREMENTS = ("torch", "torchvision", "timm", "albumentations", "opencv-python-headless", "pillow", "numpy",
                "pandas", "pydantic", "pyyaml", "mlflow")


@dataclass(frozen=True)
class Published:
    model_uri: str  # models:/<id>, the logged model
    registered: str | None  # models:/<name>@<alias> when registered


def requirements() -> list[str]:
    """Pinned to what this environment runs (the versions the ensemble was made and checked with)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def signature(topk: int = 5, tags: bool = False):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from orchestrator.serve.model import DEFAULTS

    outputs = [ColSpec("long", "target"), ColSpec("string", "class_name"), *([ColSpec("string", "tags")] if tags else [])]
    for i in range(1, topk + 1):
        outputs += [ColSpec("string", f"top{i}_class"), ColSpec("double", f"top{i}_prob")]
    return ModelSignature(
        inputs=Schema([ColSpec("string", "image_path", required=False), ColSpec("string", "image", required=False)]),
        outputs=Schema(outputs),
        params=ParamSchema([ParamSpec(name, "string" if isinstance(value, str) else "long", value)
                            for name, value in DEFAULTS.items()]),
    )


def publish(uri: str, run_id: str, bundle: Path, example_image: str, register_as: str | None, alias: str) -> Published:
    """Log `bundle` as the run's pyfunc model (an input example: `example_image`, base64); register it when asked.

    The model is loaded and run on the example while it is logged (MLflow's own check
    that it serves), so a broken bundle fails here rather than in a server.
    """
    import mlflow

    import orchestrator
    from orchestrator.serve.bundle import EnsembleSpec
    from orchestrator.serve.model import DEFAULTS

    example = pd.DataFrame({"image": [base64.b64encode(Path(example_image).read_bytes()).decode()]})
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=str(ENTRY), artifacts={"bundle": str(bundle)},
            code_paths=[str(Path(orchestrator.__file__).parent)],
            signature=signature(DEFAULTS["topk"], EnsembleSpec.load(bundle).multilabel),
            input_example=example, pip_requirements=requirements(), registered_model_name=register_as,
            metadata=_metadata(EnsembleSpec.load(bundle)),
        )
    if register_as is None:
        return Published(info.model_uri, None)
    mlflow.MlflowClient(uri).set_registered_model_alias(register_as, alias, str(info.registered_model_version))
    return Published(info.model_uri, f"models:/{register_as}@{alias}")


def _metadata(spec) -> dict:
    """What a model's reader needs without loading it: the classes and, for the csv source, the submission format."""
    return {"classes": spec.classes, **({"submission": spec.submission} if spec.submission is not None else {})}
