"""Per-worker training: model factory, optimizers, losses, the one training loop."""
