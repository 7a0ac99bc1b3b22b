"""What a rerun does with what MLflow holds: reuse ended trials, continue (--resume) or abandon the rest."""

from __future__ import annotations

from orchestrator.config import parse_grid
from orchestrator.driver import resume
from orchestrator.protocol import TrialStatus
from orchestrator.search.plan import plan_trials
from orchestrator.tracking.history import PriorTrial
from tests.unit.test_plan import TABLES


class EndedRuns:
    """Stands for the tracker: records the runs the driver ends."""

    def __init__(self):
        self.ended = []

    def end_run(self, run_id, status, tags):
        self.ended.append((run_id, tags["status"]))


def test_a_rerun_reuses_ended_trials_and_abandons_or_continues_the_rest(minimal_grid, tmp_path, monkeypatch):
    minimal_grid["tracking"] = {"storage": str(tmp_path / "store")}
    grid = parse_grid(minimal_grid)
    plan = plan_trials(grid, TABLES)
    prior = {plan[0].key: PriorTrial("r0", TrialStatus.FINISHED, 1, 0.9, True),
             plan[1].key: PriorTrial("r1", TrialStatus.RUNNING, 0, None, False)}
    monkeypatch.setattr(resume, "prior_trials", lambda tracker, metric: prior)
    monkeypatch.setattr(resume, "_as_logged", lambda tracker, old: old)
    for p in plan:
        (tmp_path / "store" / "tiny" / "trials" / p.key).mkdir(parents=True)

    work = resume.sort_out(grid, plan, EndedRuns(), resume=True)  # reads only
    assert [p.key for p in work.reused] == [plan[0].key] and list(work.continued) == [plan[1].key]
    tracker = EndedRuns()
    resume.start_afresh(work, tracker, resume=True)  # --resume: nothing is ended or cleared
    assert not tracker.ended and (tmp_path / "store" / "tiny" / "trials" / plan[1].key).exists()

    work = resume.sort_out(grid, plan, tracker, resume=False)
    assert not work.continued and len(work.to_run) == len(plan) - 1
    resume.start_afresh(work, tracker, resume=False)
    assert tracker.ended == [("r1", str(TrialStatus.ABANDONED))]
    assert sorted(p.name for p in (tmp_path / "store" / "tiny" / "trials").iterdir()) == [plan[0].key]
