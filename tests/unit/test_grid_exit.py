"""The driver's one exit path, in this process (no Ray, a real sqlite MLflow store): however a grid run ends
after its parent run opened, no writer thread is left running and the parent run is ended for --resume."""

from __future__ import annotations

import threading

import pytest

from orchestrator.config import parse_grid
from orchestrator.driver import grid as grid_module
from orchestrator.driver.grid import GridRun
from orchestrator.tracking.writer import TrackingWriter
from tests.conftest import mlflow_runs


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlflow-writer" and t.is_alive()]


@pytest.fixture
def grid(minimal_grid, tmp_path):
    minimal_grid["data"].update(loader_workers=0)
    minimal_grid["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "storage": str(tmp_path / "storage")}
    return parse_grid(minimal_grid)


def parent_status(grid) -> str:
    parents = [r for r in mlflow_runs(grid.tracking.uri, grid.name) if r.data.tags["orchestrator.role"] == "grid"]
    assert len(parents) == 1
    return parents[0].info.status


def test_ray_failing_to_start_after_the_parent_run_opened_ends_it(grid, monkeypatch):
    def no_ray(*args, **kwargs):
        raise RuntimeError("ray could not start: port in use")

    monkeypatch.setattr(grid_module, "init_ray", no_ray)
    with pytest.raises(RuntimeError, match="port in use"):
        GridRun(grid, None, verbose=False, resume=False).run()
    assert parent_status(grid) == "KILLED"  # ended, and --resume reopens it
    assert not writer_threads()


def test_a_ctrl_c_inside_the_final_drain_still_stops_the_writer_and_ends_the_parent_run(grid, monkeypatch):
    monkeypatch.setattr(grid_module, "init_ray", lambda *args, **kwargs: None)

    def interrupted(self):  # Tune's run: the user pressed Ctrl-C
        raise KeyboardInterrupt

    def drain(self, say=print, every_s=30.0):  # ... and again while the writes drain
        raise KeyboardInterrupt

    monkeypatch.setattr(GridRun, "tune", interrupted)
    monkeypatch.setattr(TrackingWriter, "drain", drain)
    with pytest.raises(KeyboardInterrupt):
        GridRun(grid, None, verbose=False, resume=False).run()
    assert not writer_threads()
    assert parent_status(grid) == "KILLED"
