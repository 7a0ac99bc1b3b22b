"""What several benchmarks share (they run as scripts: `python benchmarks/<name>.py` puts this folder on the path)."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(module: str, *args: str, cwd: Path) -> str:
    """`python -m <module> args` in `cwd` with this checkout first on the path; its stdout (exit with its output if
    it fails)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        sys.exit(f"{module} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def train_plain(model, x, y, loss_fn, rows, epochs: int, lr: float, permute) -> None:
    """The plain PyTorch loop the benchmarks compare against: AdamW (weight decay 0.05) on a one-cycle schedule to
    `lr`, batches of 64 of `rows` in the order `permute(rows)` gives each epoch, each image flipped at random."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * (len(rows) // 64))
    for _ in range(epochs):
        model.train()
        order = permute(rows)
        for start in range(0, len(order) - 63, 64):
            batch = order[start:start + 64]
            images = x[batch]
            flip = torch.rand(len(batch)) < 0.5
            images[flip] = images[flip].flip(-1)
            optimizer.zero_grad()
            loss_fn(model(images), y[batch]).backward()
            optimizer.step()
            schedule.step()
