"""Ensemble: members from MLflow, weights fitted on OOF predictions, the submission."""
