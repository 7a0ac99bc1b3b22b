"""What runs a grid on the driver: its phases, the Tune callback and the jobs it dispatches, the trial book, the time account."""
