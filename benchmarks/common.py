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
