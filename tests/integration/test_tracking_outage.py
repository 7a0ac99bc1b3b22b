"""A tracking server that goes away mid-grid: training goes on, the console says tracking is behind, and once
the server is back every epoch is in MLflow once (a real `mlflow server`, stopped and started again)."""

from __future__ import annotations

import re
import time

from tests.conftest import free_port, quickdraw_grid, run_cli, write_grid
from tests.integration.test_resume_and_faults import finish, start_cli, steps, trial_runs, wait_for

OUTAGE_S = 20  # long enough for the writer to be LATE_S (10 s) behind and for a few epochs; docs/faults.md has 2 minutes


def test_epochs_go_on_while_the_tracking_server_is_away_and_are_logged_once_after(tmp_path, quickdraw_root,
                                                                               report_figure):
    port, state = free_port(), tmp_path / "mlflow-server"
    server = ["orchestrator.tracking.server", "start", "--state-dir", str(state), "--port", str(port)]
    assert run_cli(*server, cwd=tmp_path).returncode == 0
    uri = f"http://127.0.0.1:{port}"
    grid = quickdraw_grid(quickdraw_root, "outage", models=[{"name": "test_vit"}], scheduler={"kind": "fifo"},
                          tracking={"uri": uri, "storage": str(tmp_path / "runs")})
    grid["train"]["epochs"] = 48
    grid["data"]["folds"]["use"] = [0, 1]
    try:
        process, log = start_cli("orchestrator.run", str(write_grid(tmp_path, grid)), cwd=tmp_path)
        wait_for(log, r"epoch 3/48", process)
        assert run_cli("orchestrator.tracking.server", "stop", "--state-dir", str(state), cwd=tmp_path).returncode == 0
        stopped = time.monotonic()
        reported_before = log.read_text().count("val_acc=")
        time.sleep(OUTAGE_S)
        during = log.read_text()
        reported_during = during.count("val_acc=") - reported_before
        assert run_cli(*server, cwd=tmp_path).returncode == 0
        text = finish(process, log)
        assert process.returncode == 0, text
        assert reported_during >= 4, during[-3000:]  # the scheduler and the trials never waited on MLflow
        assert re.search(r"tracking: MLflow has not taken \d+ write\(s\) since", during)
        if during.count(": FINISHED") == 2:  # the grid ended inside the outage: the driver said why it waited
            assert re.search(r"tracking: waiting for \d+ MLflow write\(s\) pending since .*Ctrl-C leaves them in", during)
        runs = trial_runs(uri, "outage")
        assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
        assert all(steps(uri, r.info.run_id) == list(range(1, 49)) for r in runs)  # each epoch once, none lost
    finally:
        run_cli("orchestrator.tracking.server", "stop", "--state-dir", str(state), cwd=tmp_path)
    report_figure(f"tracking server stopped for {OUTAGE_S} s mid-grid ({time.monotonic() - stopped:.0f} s to the grid's "
                  f"end): {reported_during} epoch reports during the outage, 2 runs FINISHED with epochs 1-48 once each")
