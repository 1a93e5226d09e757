"""Who may open the dashboard (admin and viewer keys, never predict keys), what it serves
without a session, and decision records of any format. No browser, no log needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seed import ADMIN_KEY, PREDICT_KEY, VIEWER_KEY

from dashboard.app import create_app
from dashboard.decisions import parse_record, read_decisions, report_path
from dashboard.settings import DashboardSettings, load_dashboard_settings
from serving.config import hash_api_key
from trajectory.exceptions import ConfigError

KEYS = {hash_api_key(ADMIN_KEY): "admin", hash_api_key(PREDICT_KEY): "predict"}


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "monitoring" / "20261201T000000").mkdir(parents=True)
    (tmp_path / "monitoring" / "20261201T000000" / "drift.html").write_text("<h1>drift</h1>")
    settings = DashboardSettings(work_dir=tmp_path, api_keys=KEYS,
                                 viewer_keys=[hash_api_key(VIEWER_KEY)])  # type: ignore[call-arg]
    return create_app(settings).server.test_client()


def test_without_a_key_pages_redirect_to_login_and_data_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/forecasts", headers={"Accept": "text/html"})
    assert page.status_code == 302 and page.headers["Location"].endswith("/login")
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/reports/20261201T000000/drift.html").status_code == 401
    assert client.get("/login").status_code == 200 and client.get("/health").status_code == 200


@pytest.mark.parametrize("key", [PREDICT_KEY, "not-a-key", ""])
def test_predict_and_unknown_keys_cannot_sign_in(client, key: str) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/login", data={"api_key": key}).status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/_dash-layout", headers={"X-API-Key": key}).status_code == 401


@pytest.mark.parametrize("key", [ADMIN_KEY, VIEWER_KEY])
def test_admin_and_viewer_keys_open_a_session(client, key: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/login", data={"api_key": key})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and key not in cookie
    assert client.get("/_dash-layout").status_code == 200
    assert client.get("/reports/20261201T000000/drift.html").data == b"<h1>drift</h1>"
    assert client.get("/reports/20261130T000000/drift.html").status_code == 404
    escaped = client.get("/reports/..%2F..%2Fetc/drift.html")  # Dash's page route, no file
    assert b"drift</h1>" not in escaped.data
    client.get("/logout")
    assert client.get("/_dash-layout").status_code == 401


def test_an_admin_key_in_the_header_works_for_scripts(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/_dash-layout", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_settings_refuse_plain_keys_and_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_API_KEYS", json.dumps({"plain-key": "admin"}))
    with pytest.raises(ConfigError, match="SHA-256"):
        load_dashboard_settings()
    monkeypatch.setenv("SERVING_API_KEYS", json.dumps({hash_api_key(PREDICT_KEY): "predict"}))
    with pytest.raises(ConfigError, match="no admin key"):
        load_dashboard_settings()
    monkeypatch.setenv("DASHBOARD_VIEWER_KEYS", json.dumps([hash_api_key(VIEWER_KEY)]))
    assert load_dashboard_settings().roles() == {hash_api_key(VIEWER_KEY): "viewer"}


def test_decision_records_of_any_shape(tmp_path: Path) -> None:
    empty = parse_record("x", {}, has_report=False)
    assert (empty.retrain, empty.reasons, empty.actions, empty.drift_share, empty.ab) == (
        None, [], [], None, None)
    assert empty.kinds == []
    full = parse_record("y", {"retrain": True, "actions": [{"kind": "promote"}, None, "note"],
                              "numbers": {"drift": {"share": 0.5}, "run_id": "r1"},
                              "links": {"dag_run_id": "manual__1"}}, has_report=True)
    assert full.kinds == ["retrain", "promote", "note"]
    assert (full.drift_share, full.run_id, full.dag_run_id) == (0.5, "r1", "manual__1")
    root = tmp_path / "monitoring"
    for folder, body in (("20261201T000000", "{not json"), ("20261202T000000", "[1]"),
                         ("20261203T000000", json.dumps({"reasons": "one"}))):
        (root / folder).mkdir(parents=True)
        (root / folder / "decision.json").write_text(body)
    records = read_decisions(tmp_path)
    assert [(r.folder, r.reasons, r.decided_at) for r in records] == [
        ("20261203T000000", ["one"], "2026-12-03T00:00:00+00:00")]
    assert report_path(tmp_path, "..") is None and report_path(tmp_path, "20261203T000000") is None


def _texts(component: object) -> dict[str, str]:
    """id -> text of every component with an id in a Dash tree (what the browser would show)."""
    out: dict[str, str] = {}

    def text(node: object) -> str:
        if isinstance(node, str | int | float):
            return str(node)
        if isinstance(node, list | tuple):
            return "".join(text(n) for n in node)
        return text(getattr(node, "children", None) or "")

    def walk(node: object) -> None:
        if isinstance(node, list | tuple):
            for n in node:
                walk(n)
            return
        if getattr(node, "id", None):
            out[str(node.id)] = text(node)  # type: ignore[attr-defined]
        walk(getattr(node, "children", None) or [])

    walk(component)
    return out


def _recorded(keys: int, diff: float) -> dict[str, object]:
    """A decision as the job writes it, through the job's own functions and JSON."""
    from trajectory.monitoring import ab
    from trajectory.monitoring.decision import decide
    from trajectory.monitoring.sequential import Estimate, sequential_test
    from trajectory.monitoring.settings import MonitoringSettings

    policy = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
    test = sequential_test(Estimate("cuped", diff, 0.4 / keys, 0.5, keys, keys * 10),
                           0.05, 0.02, 0.10, 0.8, 100)
    made = decide(policy, ab=test,
                  srm=ab.sample_ratio({"champion": keys // 2, "challenger": keys - keys // 2},
                                      {"champion": 0.5, "challenger": 0.5}),
                  joins=ab.join_balance({"champion": 900, "challenger": 100},
                                        {"champion": 800, "challenger": 50}))
    made.numbers["experiment"] = {"id": "e1f2", "started_at": "2026-12-01 06:00:00+00:00",
                                  "weights": {"champion": 0.5, "challenger": 0.5},
                                  "versions": {"champion": "3", "challenger": "4"}}
    return json.loads(json.dumps(made.to_dict(), default=str))  # type: ignore[no-any-return]


def test_ab_verdict_shows_the_sequential_test_and_older_comparisons() -> None:
    from dashboard.pages.overview import ab_verdict

    early = _texts(ab_verdict([parse_record("a", _recorded(40, -0.2), has_report=False)]))
    ab = _recorded(40, -0.2)["numbers"]["ab"]  # type: ignore[index]
    assert early["ab-verdict-text"] == (
        f"not yet decided (no decision before {ab['planned_keys']} keys)")
    assert early["ab-keys"] == f"40 of {ab['planned_keys']} planned" and ab["planned_keys"] > 40
    assert early["ab-diff"] == "-0.200" and early["ab-margin"] == "0.010"
    assert early["ab-interval"] == f"[{ab['low']:+.3f}, {ab['high']:+.3f}]"
    assert early["ab-design"].startswith("split by routing key, CUPED")
    assert early["ab-experiment"] == "e1f2" and early["srm-state"] == "ok"
    assert early["join-state"].startswith("MISMATCH")  # 50/100 vs 800/900 scored
    late = _texts(ab_verdict([parse_record("b", _recorded(4000, -0.2), has_report=False)]))
    assert late["ab-verdict-text"] == "challenger better"
    worse = _texts(ab_verdict([parse_record("c", _recorded(4000, 0.2), has_report=False)]))
    assert worse["ab-verdict-text"] == "challenger worse"
    old = _texts(ab_verdict([parse_record("d", {"numbers": {"ab": {
        "a": "champion", "b": "challenger", "diff": 0.11, "ci_low": 0.04, "ci_high": 0.18,
        "welch_p": 0.004, "mannwhitney_p": 0.006, "significant": True}}}, has_report=False)]))
    assert old["ab-verdict-text"] == "challenger worse" and old["ab-diff"] == "+0.110"


def test_drift_share_from_the_calibrated_verdict_or_older_shares() -> None:
    verdict = {"n_current": 500, "scores": {"speed": 1.0, "acceleration": 0.1},
               "thresholds": {"speed": 0.2, "acceleration": 0.3},
               "drifted": {"speed": True, "acceleration": False}, "flagged": True, "reason": "x"}
    new = parse_record("a", {"numbers": {"drift": verdict, "drift_report": {"share": 0.9}}},
                       has_report=False)
    assert (new.drift_share, new.drift_flagged) == (0.5, True)
    report = parse_record("b", {"numbers": {"drift": None, "drift_report": {"share": 0.25}}},
                          has_report=False)
    assert (report.drift_share, report.drift_flagged) == (0.25, None)
    assert parse_record("c", {"drift_share": 0.33}, has_report=False).drift_share == 0.33
