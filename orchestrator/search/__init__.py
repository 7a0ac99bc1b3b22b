"""Search: the trial plan, Tune schedulers, the trainable, and the Tuner wiring."""
