"""What the tool says about MLflow: the command and link to its UI."""

from __future__ import annotations


def test_the_printed_mlflow_ui_command_and_link_agree_on_host_and_port(monkeypatch):
    from orchestrator.tracking.mlflow_store import ui_command

    monkeypatch.delenv("MLFLOW_HOST", raising=False)
    monkeypatch.delenv("MLFLOW_PORT", raising=False)
    assert ui_command("sqlite:///mlflow.db", "3") == ("mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
                                                     "--port 5000, then open http://127.0.0.1:5000/#/experiments/3/runs"
                                                     "?workflowType=machine_learning")
    monkeypatch.setenv("MLFLOW_PORT", "5055")
    assert "--port 5055, then open http://127.0.0.1:5055/#/experiments/3" in ui_command("sqlite:///mlflow.db", "3")
    assert ui_command("http://head:5000", "3").startswith("open http://head:5000/#/experiments/3/runs")
