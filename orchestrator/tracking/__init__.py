"""Tracking: MLflow naming and logging, the driver-side Tune callback, plots."""
