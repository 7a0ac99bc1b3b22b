"""The driver's MLflow writer: in order, each once, off the caller's thread, through outages and driver kills.

A real sqlite MLflow store; the outage is a Tracker whose calls fail while `down`
(the integration test stops a real `mlflow server`).
"""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

from orchestrator.tracking import writer as writer_module
from orchestrator.tracking.mlflow_store import Tracker
from orchestrator.tracking.writer import TrackingWriter, replay


class Flaky:
    """A Tracker whose calls fail like a server that is away while `down` is set; `lose_answer`: the next
    run creation reaches MLflow but its answer is lost on the way back."""

    def __init__(self, tracker: Tracker):
        self.tracker, self.down, self.lose_answer, self.calls = tracker, threading.Event(), False, 0

    def __getattr__(self, name):
        method = getattr(self.tracker, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.down.is_set():
                raise ConnectionError("Connection refused")
            result = method(*args, **kwargs)
            if name == "start_run" and self.lose_answer:
                self.lose_answer = False
                raise ConnectionError("Connection reset by peer")
            return result

        return call


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{folder / 'mlflow.db'}", "writer")


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(writer_module, "LATE_S", 0.2)


def history(tracker: Tracker, run_id: str, key: str = "val_acc") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))


def test_writes_reach_mlflow_in_order_and_the_journal_empties(tracker, tmp_path):
    writer = TrackingWriter(tracker, tmp_path / "journal", retry_s=0.05)
    run = writer.start_run("t-f0", "trial", tags={"trial_key": "t-f0"})
    for epoch in (1, 2, 3):
        writer.log_metrics(run, {"val_acc": epoch / 10}, step=epoch)
    writer.log_frames(run, {"oof": pd.DataFrame({"row_id": [0, 1], "prob_0": [0.4, 0.9]})})
    writer.end_run(run, "FINISHED", {"status": "FINISHED"})
    writer.drain()
    writer.close()
    got = tracker.client.get_run(run.id)
    assert got.info.status == "FINISHED" and got.data.tags["trial_key"] == "t-f0"
    assert history(tracker, run.id) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert tracker.load_frame(run.id, "oof.parquet")["prob_0"].tolist() == [0.4, 0.9]
    assert list((tmp_path / "journal").iterdir()) == []


def test_an_outage_never_holds_the_caller_and_every_write_goes_in_once_when_it_ends(tracker, tmp_path):
    flaky = Flaky(tracker)
    writer = TrackingWriter(flaky, tmp_path / "journal", retry_s=0.05)
    run = writer.start_run("t-f1", "trial")
    writer.drain()
    flaky.down.set()
    start = time.monotonic()
    for epoch in (1, 2, 3):
        writer.log_metrics(run, {"val_acc": epoch / 10}, step=epoch)
    writer.set_tags(run, {"status": "RUNNING"})
    assert time.monotonic() - start < 0.5  # the caller (Tune's event loop) never waits on MLflow
    time.sleep(0.4)
    lag = writer.behind()
    assert lag is not None and lag[0] == 4 and "Connection refused" in writer.error
    flaky.down.clear()
    writer.drain()
    assert writer.behind() is None
    assert history(tracker, run.id) == [(1, 0.1), (2, 0.2), (3, 0.3)]  # each once, in order
    writer.close()


def test_a_run_created_but_unanswered_is_found_again_not_made_twice(tracker, tmp_path):
    flaky = Flaky(tracker)
    flaky.lose_answer = True
    writer = TrackingWriter(flaky, tmp_path / "journal", retry_s=0.05)
    run = writer.start_run("lost-answer", "trial")
    writer.log_metrics(run, {"val_acc": 0.5}, step=1)
    writer.drain()
    writer.close()
    made = [r for r in tracker.runs("trial") if r.info.run_name == "lost-answer"]
    assert [r.info.run_id for r in made] == [run.id]
    assert history(tracker, run.id) == [(1, 0.5)]


def test_writes_left_by_a_killed_driver_are_written_by_the_next_run_once(tracker, tmp_path):
    journal = tmp_path / "journal"
    before = TrackingWriter(tracker, journal, retry_s=0.05)
    run = before.start_run("killed", "trial")
    before.log_metrics(run, {"val_acc": 0.1}, step=1)
    before.drain()
    flaky = Flaky(tracker)
    flaky.down.set()
    dead = TrackingWriter(flaky, journal, retry_s=0.05)  # the driver's next writer, then the server goes away
    dead.log_metrics(run, {"val_acc": 0.2}, step=2)
    second = dead.start_run("made-later", "trial")
    dead.log_metrics(second, {"val_acc": 0.7}, step=1)
    dead.end_run(second, "FINISHED")
    time.sleep(0.2)
    dead.close()  # ... and the driver is killed: its thread never got through
    said = []
    replay(tracker, journal, say=said.append)
    assert said and "4 MLflow write(s)" in said[0]
    assert history(tracker, run.id) == [(1, 0.1), (2, 0.2)]
    (made,) = [r for r in tracker.runs("trial") if r.info.run_name == "made-later"]
    assert made.info.status == "FINISHED" and history(tracker, made.info.run_id) == [(1, 0.7)]
    replay(tracker, journal, say=said.append)  # nothing left: nothing written twice
    assert len([r for r in tracker.runs("trial") if r.info.run_name == "made-later"]) == 1
    assert history(tracker, run.id) == [(1, 0.1), (2, 0.2)]



class Broken:
    """A Tracker whose `op` raises `error` (a deterministic bug, not a server away)."""

    def __init__(self, tracker: Tracker, op: str, error: Exception):
        self.tracker, self.op, self.error, self.calls = tracker, op, error, 0

    def __getattr__(self, name):
        if name != self.op:
            return getattr(self.tracker, name)

        def call(*args, **kwargs):
            self.calls += 1
            raise self.error

        return call


@pytest.mark.parametrize("error", [TypeError("log_metrics() got an unexpected keyword argument 'when'"),
                                   FileNotFoundError(2, "No such file or directory")])
def test_a_deterministic_error_sets_that_write_aside_once_and_the_rest_go_on(tracker, tmp_path, capfd, error):
    broken = Broken(tracker, "log_metrics", error)
    writer = TrackingWriter(broken, tmp_path / "journal", retry_s=0.05)
    run = writer.start_run("t-f0", "trial")
    writer.log_metrics(run, {"val_acc": 0.5}, step=1)
    writer.set_tags(run, {"after": "yes"})
    writer.drain(every_s=60)
    writer.close()
    assert broken.calls == 1  # never retried
    assert tracker.client.get_run(run.id).data.tags["after"] == "yes"  # the later write was not held up
    kept = [json.loads(line) for line in (tmp_path / "journal.set-aside.jsonl").read_text().splitlines()]
    assert [k["op"] for k in kept] == ["log_metrics"] and type(error).__name__ in kept[0]["error"]
    assert kept[0]["args"][1] == {"val_acc": 0.5}
    err = capfd.readouterr().err
    assert err.count("tracking: MLflow write log_metrics failed") == 1 and "journal.set-aside.jsonl" in err


def test_server_errors_are_retried_and_bugs_are_not():
    from mlflow.exceptions import MlflowException

    from orchestrator.tracking.writer import transient

    assert transient(ConnectionError("refused")) and transient(TimeoutError())
    assert transient(MlflowException("API request to http://127.0.0.1:5000 failed with exception Max retries"))
    assert not transient(MlflowException("bad value", error_code="INVALID_PARAMETER_VALUE"))
    assert not transient(TypeError("unexpected keyword")) and not transient(FileNotFoundError(2, "gone"))
    assert not transient(KeyError("x"))


def test_a_dead_writer_thread_fails_drain_instead_of_hanging_it(tracker, tmp_path):
    writer = TrackingWriter(tracker, tmp_path / "journal", retry_s=0.05)

    def journal_fails(entry):
        if "done" in entry:
            raise RuntimeError("the journal's disk went away")

    writer._journal = journal_fails  # the thread's own bookkeeping breaks: nothing in _apply catches it
    run = writer.start_run("t-f0", "trial")
    writer.log_metrics(run, {"val_acc": 0.5}, step=1)
    started = time.monotonic()
    with pytest.raises(writer_module.WriterDied, match=r"the MLflow writer thread stopped .*journal.s disk went away"):
        writer.drain(every_s=60)
    assert time.monotonic() - started < 5


def test_a_journal_entry_from_another_release_is_set_aside_and_the_rest_replayed(tracker, tmp_path, capfd):
    writer = TrackingWriter(tracker, tmp_path / "journal", retry_s=0.05)
    run = writer.start_run("t-f0", "trial")
    writer.drain(every_s=60)
    writer.close()
    journal = tmp_path / "journal" / "ops.jsonl"
    journal.write_text("\n".join([
        json.dumps({"seq": 7, "op": "log_metrics", "args": "gASVKAAAAAAAAACMCF9fbWFpbl9flIwDUnVulJOUKYGULg=="}),  # a pickle
        json.dumps({"seq": 8, "op": "log_renamed", "args": [run.id, {}]}),  # an op this release has not
        json.dumps({"seq": 9, "op": "set_tags", "args": [{"__run__": run.key, "id": run.id}, {"replayed": "yes"}]}),
    ]) + "\n")
    replay(tracker, tmp_path / "journal", say=lambda line: None)
    assert tracker.client.get_run(run.id).data.tags["replayed"] == "yes"
    kept = [json.loads(line) for line in (tmp_path / "journal.set-aside.jsonl").read_text().splitlines()]
    assert [k["seq"] for k in kept] == [7, 8]
    assert "2 journal entries in" in capfd.readouterr().err
