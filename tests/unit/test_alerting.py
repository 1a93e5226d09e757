"""trajectory.alerting against a local HTTP receiver standing in for the Slack webhook: one
`{"text": ...}` POST per alert, nothing when unset, never an exception or the URL in a log, and
one message per evaluation that decides something (drift, degradation, promotion, rollback)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from webhook_receiver import SECRET_PATH, Receiver, serve

from trajectory.alerting import (
    AlertSettings,
    decision_events,
    format_alert,
    notify_decision,
    notify_task_failure,
    send_alert,
)
from trajectory.monitoring.decision import Action, decide
from trajectory.monitoring.drift_rule import DriftVerdict
from trajectory.monitoring.settings import MonitoringSettings


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with serve() as server:
        monkeypatch.setenv("TRAJ_ALERT_WEBHOOK", server.url)
        yield server


def settings(url: str | None, timeout_s: float = 5.0) -> AlertSettings:
    return AlertSettings(webhook=url, timeout_s=timeout_s)


def test_an_alert_is_one_slack_compatible_post(receiver: Receiver) -> None:
    assert send_alert("promotion", "champion -> v3", {"by": "evaluation", "skip": None})
    assert receiver.paths == [SECRET_PATH]
    assert receiver.bodies == [{"text": "[trajectory] promotion: champion -> v3\n• by: evaluation"}]


def test_unset_webhook_sends_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("TRAJ_ALERT_WEBHOOK", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert AlertSettings().webhook is None
    assert send_alert("task_failed", "x") is False
    assert send_alert("task_failed", "x", settings=settings("")) is False


@pytest.mark.parametrize("status", [404, 500])
def test_a_refusing_webhook_returns_false_and_never_logs_its_url(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(status) as server:
        with caplog.at_level(logging.DEBUG):
            assert send_alert("rollback", "x", settings=settings(server.url)) is False
        assert len(server.bodies) == 1  # tried once, no retry storm
    assert f"HTTP {status}" in caplog.text
    assert "secret-token" not in caplog.text and "127.0.0.1" not in caplog.text


def test_an_unreachable_or_malformed_webhook_returns_false(
    caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with caplog.at_level(logging.DEBUG):
        assert send_alert("x", "y", settings=settings(f"http://127.0.0.1:{port}/secret-token")) is False
        assert send_alert("x", "y", settings=settings("not a url secret-token")) is False
        assert send_alert("x", "y", settings=settings("file:///etc/secret-token")) is False
    assert "secret-token" not in caplog.text


def test_a_slow_webhook_times_out() -> None:
    with serve(delay_s=2.0) as server:
        start = time.perf_counter()
        assert send_alert("x", "y", settings=settings(server.url, timeout_s=0.2)) is False
        assert time.perf_counter() - start < 1.5


def test_long_text_is_cut() -> None:
    text = format_alert("task_failed", "x" * 10_000, {"error": "e" * 1000})
    assert len(text) <= 3000
    assert "e" * 299 + "…" in format_alert("e", "t", {"error": "e" * 1000})


def test_a_task_failure_names_the_task_try_and_error(receiver: Receiver) -> None:
    assert notify_task_failure("trajectory_etl", "etl", run_id="manual__1", try_number=3,
                               error=RuntimeError("dask is gone"), log_url="http://af/log")
    (body,) = receiver.bodies
    assert body["text"].splitlines() == [
        "[trajectory] task_failed: trajectory_etl.etl failed", "• run: manual__1", "• try: 3",
        "• error: RuntimeError: dask is gone", "• log: http://af/log"]


# -- decisions: exactly one message for an evaluation that decides, none otherwise ---------

def policy(**kw: Any) -> MonitoringSettings:
    return MonitoringSettings(drift_persistence=2, min_drift_rows=30, **kw)


def drift_verdict() -> DriftVerdict:
    return DriftVerdict(n_current=500, scores={"speed": 0.9}, thresholds={"speed": 0.2},
                        drifted={"speed": True}, flagged=True, reason="drift at n=500: speed 0.90 > 0.20")


def test_a_drift_decision_sends_exactly_one_message(receiver: Receiver) -> None:
    decision = decide(policy(), drift=drift_verdict(), drift_history=[True]).to_dict()
    assert decision["retrain"] and not decision["actions"]
    assert notify_decision(decision) is True
    (body,) = receiver.bodies
    text = body["text"]
    assert text.startswith("[trajectory] drift: retrain requested")
    assert "• reason 1: drift at n=500: speed 0.90 > 0.20; 2 evaluations in a row" in text
    assert f"• decided at: {decision['decided_at']}" in text


def test_no_decision_sends_nothing(receiver: Receiver) -> None:
    # flagged once but not persistent yet, and no A/B: the evaluation decides nothing
    decision = decide(policy(), drift=drift_verdict(), drift_history=[False]).to_dict()
    assert not decision["retrain"] and not decision["actions"]
    assert notify_decision(decision) is False
    assert notify_decision({"retrain": False, "reasons": ["no rule fired"], "actions": []}) is False
    assert receiver.bodies == []


def test_promotion_and_rollback_are_one_message_saying_whether_applied(
    receiver: Receiver
) -> None:
    decision = decide(policy()).to_dict() | {"actions": [
        Action("rollback", "champion", 4, "rollback: champion worse than v4", True).__dict__]}
    assert notify_decision(decision)
    (body,) = receiver.bodies
    assert body["text"].startswith("[trajectory] rollback: rollback champion -> v4 (applied)")
    assert decision_events({"actions": [{"kind": "promote", "apply": False}]}) == ["promotion"]


def test_decision_events_tell_drift_from_degradation() -> None:
    assert decision_events({"retrain": True, "reasons": [
        "degradation: v3 ...", "experiment not recorded: promotion off"]}) == ["degradation"]
    assert decision_events({"retrain": True, "reasons": []}) == ["retrain"]
    assert decision_events({"retrain": True, "reasons": ["drift ...", "degradation: v3"],
                            "actions": [{"kind": "promote"}]}) == [
        "drift", "degradation", "promotion"]
    assert decision_events({"retrain": False, "reasons": ["no rule fired"], "actions": []}) == []


def test_a_decision_with_the_webhook_down_does_not_raise() -> None:
    decision = {"retrain": True, "reasons": ["drift"], "actions": []}
    assert notify_decision(decision, settings=settings("http://127.0.0.1:9/x", 0.5)) is False
