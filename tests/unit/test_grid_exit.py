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


class FakeTrial:
    """What the callback reads of a Tune trial."""

    def __init__(self, config: dict):
        self.config, self.last_result, self.status, self.trial_id = {"trial": config}, {}, "RUNNING", config["config_id"]
        self.error_file = None

    def get_error(self):
        return "the trial raised"


def fake_tuner(fail_key: str | None = None):
    """run_tuner's stand-in: each planned trial runs the real loop in this process (local mode) and the real
    callback hears its events as Tune's would; `fail_key`'s trial errors after its first epoch."""
    from orchestrator.train.loop import run_loop
    from orchestrator.train.session import InTrial

    def run(grid, plan, tables, callback, stamp, slots, seeds=None):
        callback.setup()
        for planned in plan:
            cfg = planned.config
            trial = FakeTrial(cfg.model_dump(mode="json"))
            callback.on_trial_start(0, [], trial)

            def send(result, trial=trial, key=planned.key):
                trial.last_result = result
                callback.on_trial_result(0, [], trial, result)
                if key == fail_key:
                    raise RuntimeError("a worker died")

            try:
                run_loop(cfg, InTrial(cfg.layout.trial_dir(cfg.trial_key), send=send))
            except RuntimeError:
                callback.on_trial_error(0, [], trial)
                continue
            callback.on_trial_complete(0, [], trial)
            callback.on_step_end(0, [])
        callback.on_experiment_end([])

    return run


def test_every_phase_runs_in_process_against_a_fake_tuner(grid, monkeypatch, capsys):
    """prepare, plan, open, tune (the real loop and callback; one trial's worker dies), the writer's drain,
    insight, release, close and the summary, with a real sqlite MLflow store: seconds, no Ray."""
    from mlflow.tracking import MlflowClient

    from orchestrator.search.plan import plan_trials
    from orchestrator.search.runner import Slots

    grid = grid.model_copy(update={"insight": grid.insight.model_copy(update={"gradcam_configs": 0})})
    monkeypatch.setattr(grid_module, "init_ray", lambda *args, **kwargs: None)
    monkeypatch.setattr(grid_module, "check_shared_paths", lambda paths: None)
    monkeypatch.setattr(grid_module, "trial_slots", lambda grid: Slots(1, False))
    run = GridRun(grid, None, verbose=False, resume=False)
    run.prepare()
    failing = plan_trials(grid, run.prepared.trial_tables)[0].key
    monkeypatch.setattr(grid_module, "run_tuner", fake_tuner(fail_key=failing))
    code = GridRun(grid, None, verbose=False, resume=False).run()
    out = capsys.readouterr().out
    trials = {r.data.tags["trial_key"]: r for r in mlflow_runs(grid.tracking.uri, grid.name)
              if r.data.tags["orchestrator.role"] == "trial"}
    assert code == 1 and parent_status(grid) == "FINISHED" and not writer_threads()
    assert trials.pop(failing).data.tags["status"] == "FAILED"
    assert [(r.data.tags["status"], r.data.tags["predictions"]) for r in trials.values()] == [("FINISHED", "true")] * 2
    artifacts = {a.path for a in MlflowClient(grid.tracking.uri).list_artifacts(next(iter(trials.values())).info.run_id)}
    assert {"oof.parquet", "checkpoint", "confusion_matrix.png"} <= artifacts  # the writer's side read and drew them
    assert "mean val_acc" in out and "where the time went" in out  # the leaderboard and the time account
