"""Ray-based parallel experiment orchestrator for image classification.

One grid.yaml -> folds x models x hyperparameters on Ray Tune (ASHA), each trial a
Ray Train TorchTrainer, everything tracked in MLflow, best runs ensembled.
"""

__version__ = "0.1.0"
