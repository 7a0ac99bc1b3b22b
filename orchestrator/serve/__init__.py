"""Serving: the ensemble as a bundle of files, an MLflow pyfunc model over it, and its publication."""
