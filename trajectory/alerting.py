"""One webhook for every operator alert: a Slack-compatible `{"text": ...}` POST.

Airflow task failures (after their retries), the evaluation's retrain / promote / rollback
decisions, and Prometheus alerts (through Alertmanager, deploy/prometheus/) all reach the same
channel, set once as TRAJ_ALERT_WEBHOOK; unset, nothing is sent.

An alert is a side channel: a webhook that is down, slow or refusing must never fail the task
or the evaluation that reports, so `send_alert` catches every error, logs the error's class
and status only (the URL is a secret) and returns False. The POST uses urllib, not httpx, whose
own INFO log line names the URL and would put it in every task log. Messages carry names,
versions and reasons, never a client, scene or agent id.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

MAX_TEXT = 3000  # Slack shows ~4000 characters of a message; longer bodies are cut here
MAX_FIELD = 300  # one field's value (an exception message, a reason)


class AlertSettings(BaseSettings):
    """Where alerts go (TRAJ_ALERT_WEBHOOK) and how long a POST may take."""

    model_config = SettingsConfigDict(env_prefix="TRAJ_ALERT_", env_file=".env", extra="ignore")

    webhook: SecretStr | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)


def _cut(value: object, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_alert(event: str, text: str, fields: Mapping[str, Any] | None = None) -> str:
    """`[trajectory] event: text` and one `• key: value` line per field (None left out)."""
    lines = [f"[trajectory] {event}: {text}"]
    lines += [f"• {key}: {_cut(value, MAX_FIELD)}" for key, value in (fields or {}).items()
              if value is not None]
    return _cut("\n".join(lines), MAX_TEXT)


def _describe(exc: BaseException) -> str:
    """The error without its message, which may hold the URL."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return type(exc).__name__


def send_alert(event: str, text: str, fields: Mapping[str, Any] | None = None, *,
               settings: AlertSettings | None = None) -> bool:
    """POST one message to the webhook; -> True when it answered 2xx. Never raises."""
    try:
        settings = settings or AlertSettings()
        url = settings.webhook.get_secret_value() if settings.webhook else ""
        if not url:
            log.debug("alert %s not sent: TRAJ_ALERT_WEBHOOK is not set", event)
            return False
        if not url.startswith(("http://", "https://")):  # urllib would also open file://
            log.warning("alert %s not sent: TRAJ_ALERT_WEBHOOK is not an http(s) URL", event)
            return False
        body = json.dumps({"text": format_alert(event, text, fields)}).encode()
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=settings.timeout_s):
            pass  # a non-2xx answer raises HTTPError
    except Exception as exc:  # noqa: BLE001 - an alert must never fail its sender
        log.warning("alert %s not delivered: %s", event, _describe(exc))
        return False
    log.info("alert %s delivered", event)
    return True


def notify_task_failure(dag_id: str, task_id: str, *, run_id: str | None = None,
                        try_number: int | None = None, error: BaseException | None = None,
                        log_url: str | None = None,
                        settings: AlertSettings | None = None) -> bool:
    """A task failed for good (its retries spent, or an error retrying cannot fix)."""
    return send_alert("task_failed", f"{dag_id}.{task_id} failed", {
        "run": run_id,
        "try": try_number,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "log": log_url,
    }, settings=settings)


def decision_events(decision: Mapping[str, Any]) -> list[str]:
    """What an evaluation decided, as event names: drift and/or degradation (retrain),
    promotion, rollback; [] when it decided nothing."""
    events: list[str] = []
    if decision.get("retrain"):  # the rules' reasons begin with `drift` or `degradation:`
        reasons: Sequence[str] = decision.get("reasons") or []
        events += [e for e in ("drift", "degradation")
                   if any(str(r).startswith(e) for r in reasons)] or ["retrain"]
    kinds = {"promote": "promotion", "rollback": "rollback"}
    for action in decision.get("actions") or []:
        event = kinds.get(str(action.get("kind")))
        if event and event not in events:
            events.append(event)
    return events


def notify_decision(decision: Mapping[str, Any], *,
                    settings: AlertSettings | None = None) -> bool:
    """One message for an evaluation that decides to retrain, promote or roll back (a
    `Decision.to_dict()` or `EvaluationResult.summary()`); nothing for one that does not.
    -> True when a message was delivered."""
    events = decision_events(decision)
    if not events:
        return False
    lines = []
    if decision.get("retrain"):
        lines.append("retrain requested")
    for action in decision.get("actions") or []:
        applied = "applied" if action.get("apply") else "recommended, not applied"
        lines.append(f"{action.get('kind')} {action.get('alias')} -> v{action.get('version')} "
                     f"({applied})")
    fields: dict[str, Any] = {
        f"reason {i}": reason for i, reason in enumerate(decision.get("reasons") or [], 1)
    }
    fields |= {"decided at": decision.get("decided_at"), "mlflow run": decision.get("run_id")}
    return send_alert(", ".join(events), "; ".join(lines), fields, settings=settings)
