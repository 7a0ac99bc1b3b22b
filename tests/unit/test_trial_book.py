"""The driver's bookkeeping of trials (statuses, epochs, best checkpoint, retries, nodes) and what people see of it."""

from __future__ import annotations

import io

import pytest

from orchestrator.config import TrialTables, parse_grid
from orchestrator.driver.progress import Progress, summary_table
from orchestrator.driver.trials import TrialBook
from orchestrator.protocol import EpochReport, TrialStatus
from orchestrator.search.plan import plan_trials
from orchestrator.tracking.history import PriorTrial

TABLES = TrialTables(folds_path="f.parquet", test_path=None, num_classes=3)


@pytest.fixture
def plan(minimal_grid):
    minimal_grid["search"] = {"train.epochs": {"grid": [2, 4]}}
    return plan_trials(parse_grid(minimal_grid), TABLES)


def report(epoch: int, **fields) -> EpochReport:
    return EpochReport(epoch=epoch, val_acc=0.5, train_loss=1.0, **fields)


def test_a_trial_runs_reports_and_ends_finished_or_killed(plan):
    book = TrialBook(plan)
    first, second = book.records[plan[0].key], book.records[plan[1].key]
    assert first.status is TrialStatus.PENDING
    assert book.start(first) is False  # a new run
    first.run_id = "run-1"  # (TrialRuns.open's part)
    assert first.status is TrialStatus.RUNNING
    news = book.result(first, report(1, best_epoch=1, best_score=0.5, worker_node="10.0.0.1/abcd"))
    assert news.new_epoch and news.moved and not news.retried
    assert first.best_checkpoint == plan[0].config.layout.checkpoint(plan[0].key, 1)
    assert not book.result(first, report(1, replay=True)).new_epoch  # a restored trial repeats an epoch it logged
    book.complete(first, ended_by_itself=True)
    assert first.status is TrialStatus.FINISHED
    book.start(second)
    second.run_id = "run-2"
    book.complete(second, ended_by_itself=False)  # the scheduler stopped it
    assert second.status is TrialStatus.KILLED


def test_a_trial_stopped_before_it_started_is_killed_not_finished(plan):
    book = TrialBook(plan)
    record = book.records[plan[0].key]
    book.complete(record, ended_by_itself=True)  # Tune's done, no run ever opened
    assert record.status is TrialStatus.KILLED


def test_a_retry_and_a_new_node_are_news_once(plan):
    book = TrialBook(plan)
    record = book.records[plan[0].key]
    book.start(record)
    book.result(record, report(1, worker_node="a/1"))
    news = book.result(record, report(2, attempt=1, worker_node="b/2"))
    assert news.retried and news.moved and record.retries == 1 and record.nodes == ["a/1", "b/2"]
    again = book.result(record, report(3, attempt=1, worker_node="b/2"))
    assert not again.retried and not again.moved


def test_pauses_failures_and_interruption(plan):
    book = TrialBook(plan)
    running, paused, failed, pending = (book.records[p.key] for p in plan[:4])
    for record, run_id in ((running, "r1"), (paused, "r2"), (failed, "r3")):
        book.start(record)
        record.run_id = run_id
    book.paused([paused.key, pending.key])  # only a running trial becomes paused
    assert paused.status is TrialStatus.PAUSED and pending.status is TrialStatus.PENDING
    book.fail(failed, "Traceback ...")
    assert failed.status is TrialStatus.FAILED and failed.error == "Traceback ..."
    hit = book.interrupt()
    assert {r.key for r in hit} == {running.key, paused.key}  # open and with a run; a pending trial has none
    assert running.status is TrialStatus.INTERRUPTED and failed.status is TrialStatus.FAILED
    assert book.with_status(TrialStatus.INTERRUPTED) == hit


def test_continued_and_reused_trials_start_from_what_earlier_runs_left(plan):
    old = PriorTrial("run-old", TrialStatus.INTERRUPTED, epochs=2, best=0.4, predictions=False, nodes=("a/1",))
    done = PriorTrial("run-done", TrialStatus.FINISHED, epochs=4, best=0.8, predictions=True)
    book = TrialBook(plan[1:], continued={plan[1].key: old}, reused=[(plan[0], done)])
    continued = book.records[plan[1].key]
    assert book.start(continued) is True and continued.epochs == 2 and continued.nodes == ["a/1"]
    reused = book.records[plan[0].key]
    assert reused.reused and reused.status is TrialStatus.FINISHED and reused.run_id == "run-done"
    assert "FINISHED (reused)" in summary_table(book.records.values(), "val_acc")


def test_the_progress_line_counts_epochs_against_each_trials_own_budget(plan):
    budgets = {p.config.train.epochs for p in plan}
    assert budgets == {2, 4}
    stream = io.StringIO()
    progress = Progress(len(plan), "val_acc", stream=stream)
    for p in plan:
        progress.trial_result(TrialBook([p]).records[p.key], report(1))
    lines = stream.getvalue().splitlines()
    assert any("epoch 1/2 " in line for line in lines) and any("epoch 1/4 " in line for line in lines)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_terminal_a_live_line_counts_trials_and_keeps_the_best_score(plan):
    stream = Terminal()
    progress = Progress(len(plan), "val_acc", mode="max", stream=stream)
    book = TrialBook(plan)
    first, second = (book.records[p.key] for p in plan[:2])
    book.start(first)
    progress.trial_result(first, EpochReport(epoch=1, val_acc=0.9, train_loss=1.0))
    progress.trial_result(first, EpochReport(epoch=2, val_acc=0.7, train_loss=1.0))
    first.status = TrialStatus.FINISHED
    progress.trial_closed(first)
    book.start(second)
    progress.bar.mininterval = 0  # (redrawn at most once a second otherwise)
    progress.tick(book.records.values())
    progress.close()
    out = stream.getvalue()
    assert f"trials 1/{len(plan)}" in out and "best val_acc 0.9000" in out  # the best so far, not the latest
    assert "running 1" in out and "finished 1" in out and "left" in out
    assert "epoch 2/" in out  # the event lines still come, above the live line


def test_the_live_line_keeps_redrawing_after_a_trial_ends_and_ignores_a_nan_score(plan):
    stream = Terminal()
    progress = Progress(len(plan), "val_acc", stream=stream)
    progress.bar.mininterval = 0
    book = TrialBook(plan)
    first = book.records[plan[0].key]
    progress.trial_result(first, EpochReport(epoch=1, val_acc=float("nan"), train_loss=1.0))
    progress.trial_result(first, EpochReport(epoch=2, val_acc=0.6, train_loss=1.0))
    first.status = TrialStatus.FINISHED
    progress.trial_closed(first)
    book.start(book.records[plan[1].key])
    before = stream.getvalue()
    progress.tick(book.records.values())
    assert "running 1" in stream.getvalue()[len(before):]  # a tick after a trial ended still redraws the line
    assert "best val_acc 0.6000" in stream.getvalue()  # the NaN did not stick as the best


def test_off_a_terminal_the_tick_is_a_heartbeat_line(plan):
    book = TrialBook(plan)
    plain = io.StringIO()
    quiet = Progress(len(plan), "val_acc", stream=plain, heartbeat_s=0)
    quiet.tick(book.records.values())
    assert quiet.bar is None and plain.getvalue().count("\n") == 1 and "\r" not in plain.getvalue()  # a log: a heartbeat line


def test_system_samples_travel_in_the_report_and_log_under_mlflows_names():
    report_ = EpochReport(epoch=1, system={"cpu_utilization_percentage": 50.0})
    assert EpochReport.from_result(report_.as_result()) == report_
    flattened = {"epoch": 1, "system/cpu_utilization_percentage": 50.0}  # what a Tune logger may hand on
    assert EpochReport.from_result(flattened).system == {"cpu_utilization_percentage": 50.0}
    assert report_.system_metrics() == {"system/cpu_utilization_percentage": 50.0}
    assert "system" not in EpochReport.metric_names()


def test_the_epoch_report_round_trips_through_a_tune_result():
    original = EpochReport(epoch=3, train_loss=0.5, val_acc=0.75, trial_done=True, best_epoch=2, best_score=0.8,
                           attempt=1, worker_node="10.0.0.1/abcd")
    result = original.as_result()
    assert result["trial_done"] == 1.0 and isinstance(result["trial_done"], float)  # every Tune logger takes it
    assert EpochReport.from_result({**result, "training_iteration": 7}) == original  # Tune's own keys are ignored
    assert EpochReport.from_result({"training_iteration": 1}) is None
    assert set(EpochReport.metric_names()) >= {"train_loss", "val_loss", "val_acc", "val_f1", "lr", "images_per_s"}
    from orchestrator.metrics import METRICS

    assert EpochReport.scores() == {name: metric.mode for name, metric in METRICS.items()}  # the registry's, each
    assert {"val_loss": "min", "val_acc": "max", "val_f1": "max"}.items() <= EpochReport.scores().items()


def test_statuses_say_what_reruns_and_mlflow_make_of_them():
    assert {s for s in TrialStatus if s.ended} == {TrialStatus.FINISHED, TrialStatus.KILLED}
    assert {s for s in TrialStatus if s.open} == {TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED}
    assert TrialStatus.INTERRUPTED.mlflow_status == "KILLED" and f"{TrialStatus.FAILED}" == "FAILED"


def test_a_trial_that_predicted_itself_is_read_back_and_a_stopped_one_goes_to_a_task(tmp_path, minimal_grid):
    """The last report says whether the trial left its frames in storage; only the others cost a task."""
    import pandas as pd

    from orchestrator.driver.predictions import PredictionTasks
    from orchestrator.train.predict import save_frames

    minimal_grid["tracking"] = {"storage": str(tmp_path / "storage")}
    plan = plan_trials(parse_grid(minimal_grid), TABLES)
    book, submitted = TrialBook(plan), []
    tasks = PredictionTasks(lambda config, checkpoint: submitted.append(checkpoint) or f"ref-{checkpoint}")
    itself, stopped = book.records[plan[0].key], book.records[plan[1].key]
    frames = {"oof": pd.DataFrame({"row_id": [3], "prob_0": [0.25]}), "metrics": {"oof_acc": 0.5}}
    save_frames(frames, plan[0].config.layout.predictions(plan[0].key))
    book.result(itself, report(2, best_epoch=1, trial_done=True, predicted=True))
    book.result(stopped, report(1, best_epoch=1))
    tasks.submit(itself)
    tasks.submit(stopped)
    assert submitted == [stopped.best_checkpoint]  # one task, for the stopped trial
    (record, read, error, seconds), = tasks.read
    assert record is itself and error is None and seconds == 0 and "test" not in read
    assert read["oof"].equals(frames["oof"]) and read["metrics"] == {"oof_acc": 0.5}


def test_the_end_line_says_whether_predictions_are_in_or_coming(plan):
    book, out = TrialBook(plan), io.StringIO()
    progress = Progress(len(plan), "val_acc", stream=out)
    done, stopped = book.records[plan[0].key], book.records[plan[1].key]
    done.run_id = stopped.run_id = "run"  # (TrialRuns.open's part)
    book.result(done, report(2, best_epoch=2, trial_done=True, predicted=True))
    book.complete(done, ended_by_itself=True)
    book.result(stopped, report(1, best_epoch=1))
    book.complete(stopped, ended_by_itself=False)
    progress.trial_ended(done)
    progress.trial_ended(stopped)
    first, second = out.getvalue().splitlines()
    assert first.endswith(f"{done.key}: completed after 2 epoch(s); its OOF + test predictions are in")
    assert second.endswith(f"{stopped.key}: stopped early by the scheduler after 1 epoch(s); a task predicts OOF + "
                           f"test from the best checkpoint once a worker is free")


def test_after_ctrl_c_the_leaderboard_shows_the_latest_scores_not_the_last_committed_best(plan):
    """Epoch 2's checkpoint was still being written when Ctrl-C came: its report named epoch 1 as the committed
    best, but the leaderboard shows what epoch 2 printed (predictions still use the committed best)."""
    from orchestrator.driver.leaderboard import leaderboard

    book = TrialBook(plan)
    record = book.records[plan[0].key]
    book.start(record)
    book.result(record, EpochReport(epoch=1, val_acc=0.0397, best_epoch=1, best_score=0.0397))
    book.result(record, EpochReport(epoch=2, val_acc=0.2321, best_epoch=1, best_score=0.0397, settled=False))
    book.interrupt()
    row = leaderboard(book.records.values(), "max").set_index("config_id").loc[plan[0].config.config_id]
    assert row["fold_0"] == pytest.approx(0.2321) and record.best == pytest.approx(0.0397)
    assert record.best_epoch == 1  # what a prediction task would read: the committed best
