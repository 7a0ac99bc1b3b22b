"""What a trial imports, imported by each Ray worker process as Ray starts it (local mode).

Ray starts a pool of worker processes as the driver connects, while the driver
still prepares the data, MLflow and the Tuner; a trial in local mode (or a
prediction task) that lands on one of them finds torch, timm, albumentations and
the loop already imported instead of paying for them after it starts. Off a
local Ray this hook is not set: Ray Train's helper processes would pay for
imports they never use.
"""

from __future__ import annotations


def preload() -> None:
    import albumentations  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401

    import orchestrator.train.loop
    import orchestrator.train.predict  # noqa: F401
