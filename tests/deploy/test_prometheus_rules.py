"""Prometheus and Alertmanager configuration (deploy/prometheus/), checked by the real tools:
`promtool check` and `promtool test rules` (each alert fires on the series it is for and stays
quiet on a healthy neighbour), `amtool check-config`, and a real Alertmanager that posts an
alert to a local webhook. Plus the contract with the code and the docs: every metric a rule
reads is one serving/metrics.py exports, every alert has a unit test and a runbook section.

The binaries come from Debian's prometheus and prometheus-alertmanager packages
(scripts/install_services.sh); without them these tests skip, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from webhook_receiver import Receiver, serve

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RUNBOOK = REPO / "runbooks" / "alerts.md"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/install_services.sh installs it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROM, capture_output=True, text=True, timeout=120, check=False)


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = tool("promtool")
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        done = run(promtool, *args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_prove_each_alert_fires() -> None:
    done = run(tool("promtool"), "test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rejects_a_rule_that_fires_wrongly(tmp_path: Path) -> None:
    """The unit tests can fail: with the 5xx threshold at 50 % the 14 % case goes quiet."""
    promtool = tool("promtool")
    for name in ("alerts.yml", "alerts.test.yml"):
        shutil.copy(PROM / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(rules.read_text().replace("          > 0.05\n", "          > 0.5\n", 1))
    done = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "ServingHigh5xxRate" in done.stdout + done.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"]
             if case["exp_alerts"]}
    assert fired == set(alert_rules())


def test_the_rules_read_only_metrics_the_service_exports() -> None:
    """A renamed metric would leave its alert silent forever: compare with the registry."""
    from prometheus_client.metrics_core import Metric

    from serving.metrics import ServingMetrics

    suffixes = {"counter": ("_total",), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum")}
    families: list[Metric] = list(ServingMetrics().registry.collect())
    exported = {f.name + s for f in families for s in suffixes.get(f.type, ("",))}
    used = {m for r in alert_rules().values() for m in re.findall(r"\bserving_\w+", r["expr"])}
    assert used and used <= exported, sorted(used - exported)
    assert {"serving_requests_total", "serving_request_latency_seconds_bucket",
            "serving_redis_breaker_open", "serving_prediction_log_queue",
            "serving_predicted_agents_total", "serving_model_info"} <= used


def test_every_alert_links_a_runbook_section() -> None:
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"(?m)^#+ (.+)$", RUNBOOK.read_text())}
    for name, rule in alert_rules().items():
        link = rule["annotations"]["runbook"]
        page, _, anchor = link.partition("#")
        assert page == "runbooks/alerts.md" and anchor in headings, f"{name}: {link}"
        assert rule["labels"]["severity"] in {"page", "ticket"}, name


def test_prometheus_sends_to_alertmanager_and_scrapes_every_replica_and_dask() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
               for job in config["scrape_configs"]}
    assert targets["serving"] == ["serving-1:8000", "serving-2:8000"]
    assert targets["dask"] == ["dask-scheduler:8787"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["alertmanager:9093"]


def test_amtool_accepts_the_alertmanager_config() -> None:
    done = run(tool("amtool"), "check-config", "alertmanager.yml")
    assert done.returncode == 0, done.stdout + done.stderr


# -- a real Alertmanager delivers to the webhook -------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as server:
        yield server


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_alertmanager_posts_a_firing_alert_to_the_webhook_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The container's entrypoint and the repository's config, the URL file and the group wait
    pointed at this test; the URL comes from TRAJ_ALERT_WEBHOOK as in podman-compose.yml."""
    binary = tool("prometheus-alertmanager")
    url_file = tmp_path / "secret" / "webhook_url"
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    config["receivers"][0]["slack_configs"][0]["api_url_file"] = str(url_file)
    config["route"]["group_wait"] = "1s"
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "ALERTMANAGER_BIN": binary,
           "ALERTMANAGER_URL_FILE": str(url_file),
           "TRAJ_ALERT_WEBHOOK": f"http://127.0.0.1:{receiver.server_address[1]}/hooks/secret"}
    proc = subprocess.Popen(
        [str(PROM / "alertmanager-entrypoint.sh"), f"--config.file={tmp_path / 'am.yml'}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api = f"http://127.0.0.1:{port}/api/v2"
        wait_for(lambda: urllib.request.urlopen(f"{api}/status", timeout=1).status == 200,
                 30, "alertmanager to start")
        alert = [{"labels": {"alertname": "ServingReplicaNotReady", "instance": "serving-2:8000",
                             "severity": "page"},
                  "annotations": {"summary": "serving-2:8000 is down (scrape failed)",
                                  "runbook": "runbooks/alerts.md#servingreplicanotready"}}]
        request = urllib.request.Request(f"{api}/alerts", data=json.dumps(alert).encode(),
                                         headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        wait_for(lambda: receiver.bodies, 30, "the webhook to be called")
        time.sleep(2)  # a second post would come within group_wait; none must
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert url_file.stat().st_mode & 0o077 == 0  # the secret: readable by its owner only
    (body,) = receiver.bodies
    (attachment,) = body["attachments"]
    assert attachment["title"] == "[trajectory] FIRING: ServingReplicaNotReady"
    assert "serving-2:8000 is down (scrape failed) (severity page" in attachment["text"]
    assert "runbooks/alerts.md#servingreplicanotready" in attachment["text"]
