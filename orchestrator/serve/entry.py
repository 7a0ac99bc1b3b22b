"""The file MLflow logs as the ensemble model's code ("models from code"): no pickled object in the model."""

import mlflow

from orchestrator.serve.model import EnsembleModel

mlflow.models.set_model(EnsembleModel())
