"""The deployment contract, read from the files (no Podman needed).

podman-compose.yml: the service names runbooks use, a healthcheck on every long-running
service, `depends_on` with conditions that can be met, secrets that fail fast (`${VAR:?`),
every required variable in .env.example, bind-mounted files that exist. Containerfile: the
`ARG BASE_IMAGE` of the first stage, the targets compose runs, a non-root serving image whose
CMD is exec form (the locks each target installs: test_packaging.py).
Each check returns its problems, and is also run on a broken example so it can fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "podman-compose.yml"
CONTAINERFILE = REPO / "Containerfile"
INFRA_CONTAINERFILE = REPO / "deploy" / "Containerfile.infra"
ENV_EXAMPLE = REPO / ".env.example"
NGINX_CONF = REPO / "deploy" / "nginx.conf"

SERVICES = {
    "postgres", "redis", "mlflow", "airflow-init", "airflow-apiserver", "airflow-scheduler",
    "airflow-dag-processor", "airflow-triggerer", "dask-scheduler", "dask-worker",
    "serving-1", "serving-2", "lb", "dashboard", "prometheus", "alertmanager",
}
ONE_SHOT = {"airflow-init"}
CONDITIONS = {"service_healthy", "service_completed_successfully", "service_started"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|KEY", re.IGNORECASE)
VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<rest>[^}]*)\}")


def load_compose(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    """Long-running services without a healthcheck (one-shot ones are exempt)."""
    problems = []
    for name, svc in compose["services"].items():
        if svc.get("restart") == "no" or name in ONE_SHOT:
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        if not test or svc["healthcheck"].get("disable"):
            problems.append(f"{name}: no healthcheck")
    return problems


def depends_on_problems(compose: dict[str, Any]) -> list[str]:
    """depends_on must be a mapping with a condition that the dependency can reach."""
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on is a list (no conditions)")
            continue
        for dep, spec in deps.items():
            condition = (spec or {}).get("condition")
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif condition not in CONDITIONS:
                problems.append(f"{name}: depends on {dep} without a condition")
            elif condition == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, it has no healthcheck")
            elif condition == "service_completed_successfully" and dep not in ONE_SHOT:
                problems.append(f"{name}: waits for long-running {dep} to complete")
    return problems


def interpolations(text: str) -> list[re.Match[str]]:
    """The `${...}` of a compose file, comment lines left out."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return list(VAR.finditer(code))


def secret_problems(text: str) -> list[str]:
    """Variables that look like secrets must fail fast: `${VAR:?message}`, never a default."""
    return sorted({
        f"{m['name']} is interpolated as {m[0]}"
        for m in interpolations(text)
        if SECRET_NAME.search(m["name"]) and m["op"] != ":?"
    })


def required_vars(text: str) -> set[str]:
    return {m["name"] for m in interpolations(text) if m["op"] == ":?"}


def env_example_vars(text: str) -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


def containerfile_targets(text: str) -> dict[str, str]:
    """target -> the body of its stage."""
    stages = re.split(r"(?im)^FROM\s+", text)[1:]
    targets = {}
    for stage in stages:
        head, _, body = stage.partition("\n")
        match = re.search(r"(?i)\sAS\s+(\S+)", head)
        if match:
            targets[match[1]] = body
    return targets


def containerfile_problems(text: str) -> list[str]:
    problems = []
    preamble = re.split(r"(?im)^FROM\s+", text)[0]
    if not re.search(r"(?m)^ARG BASE_IMAGE=\S+", preamble):
        problems.append("no `ARG BASE_IMAGE=<default>` before the first FROM")
    if not re.match(r"FROM \$\{BASE_IMAGE\} AS \w+\n", text[len(preamble):]):
        problems.append("the first stage is not FROM ${BASE_IMAGE}")
    targets = containerfile_targets(text)
    problems += [f"no target {t}" for t in ("base", "serving", "airflow", "worker") if t not in targets]
    serving = targets.get("serving", "")
    if not re.search(r"(?m)^USER (?!root\b|0\b)\S+", serving):
        problems.append("serving runs as root")
    if not re.search(r"(?m)^HEALTHCHECK\b", serving) or "/health" not in serving:
        problems.append("serving has no HEALTHCHECK on /health")
    if not re.search(r'(?m)^CMD \["uvicorn"', serving):
        problems.append("serving CMD is not exec form uvicorn (PID 1 must get SIGTERM)")
    if "--no-index" not in text or "--find-links" not in text:
        problems.append("dependencies are not installed offline from the wheelhouse")
    if "TORCH_INDEX" not in text:
        problems.append("no TORCH_INDEX build arg for a CUDA torch")
    return problems


def package_copy_problems(containerfile: str, ignorefile: str, packages: list[str]) -> list[str]:
    """Every package pyproject.toml installs must be in the build context (un-ignored in
    deploy/containerignore) and copied before `pip install .`: a missing one installs
    silently and fails only when its command runs (`trajectory dashboard` in compose)."""
    base = containerfile_targets(containerfile).get("base", "")
    problems = []
    for package in packages:
        if not re.search(rf"(?m)^COPY (--\S+ )*{package} ", base):
            problems.append(f"{package}: not copied into the base stage")
        if f"!{package}/**" not in ignorefile.splitlines():
            problems.append(f"{package}: not in the build context (deploy/containerignore)")
    return problems


def installed_packages() -> list[str]:
    """The top-level packages of pyproject.toml (`include = ["trajectory*", ...]`)."""
    import tomllib

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    return [pattern.rstrip("*") for pattern in find["find"]["include"]]


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return load_compose(compose_text)


def test_service_names(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    for name, svc in compose["services"].items():
        assert svc.get("container_name") == name, f"{name}: container_name must be {name}"


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    assert healthcheck_problems(compose) == []


def test_depends_on_uses_conditions(compose: dict[str, Any]) -> None:
    assert depends_on_problems(compose) == []


def test_secrets_fail_fast(compose_text: str) -> None:
    assert secret_problems(compose_text) == []
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "API_KEY_HASHES"} <= required_vars(
        compose_text)


def test_the_pseudonym_key_is_required_wherever_identifiers_are_handled(
    compose: dict[str, Any], compose_text: str
) -> None:
    """Serving replicas store pseudonyms; Airflow joins ground truth to them and purges and
    erases: all need the same key, and compose stops without it (docs/privacy.md)."""
    assert "PSEUDONYM_KEY" in required_vars(compose_text)
    key = "${PSEUDONYM_KEY:?set PSEUDONYM_KEY in .env}"
    users = [n for n in compose["services"] if n.startswith(("serving-", "airflow-"))]
    assert len(users) == 7
    for name in users:
        env = compose["services"][name]["environment"]
        assert env.get("TRAJ_PSEUDONYM_KEY") == key, name
        assert env.get("SERVING_LOG_RETENTION_DAYS") == "${LOG_RETENTION_DAYS:-30}", name
    # the retention DAG reaches each replica's spill files and batch folders
    scheduler = compose["services"]["airflow-scheduler"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in scheduler["volumes"]}
    dirs = json.loads(scheduler["environment"]["TRAJ_PRIVACY_SERVING_WORK_DIRS"])
    for replica, folder in zip(("serving-1", "serving-2"), dirs, strict=True):
        assert mounts[folder] == compose["services"][replica]["volumes"][0].split(":")[0]


def test_env_example_defines_every_required_variable(compose_text: str) -> None:
    missing = required_vars(compose_text) - env_example_vars(ENV_EXAMPLE.read_text())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_leaks_no_project_settings() -> None:
    """The project's settings read .env too: compose variables must not look like theirs."""
    leaked = {v for v in env_example_vars(ENV_EXAMPLE.read_text())
              if v.startswith(("TRAJ_", "SERVING_", "MLFLOW_TRACKING"))}
    assert not leaked


def test_named_volumes_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            elif not source.startswith(("/", "$")):
                assert source in declared, f"{name}: volume {source} is not declared"
    assert {"pgdata", "mlflow-artifacts", "serving-1-data"} <= declared


def test_containerfile_contract() -> None:
    assert containerfile_problems(CONTAINERFILE.read_text()) == []


def test_every_installed_package_is_copied_into_the_images() -> None:
    packages = installed_packages()
    assert "dashboard" in packages
    ignorefile = (REPO / "deploy" / "containerignore").read_text()
    assert package_copy_problems(CONTAINERFILE.read_text(), ignorefile, packages) == []


def test_images_come_from_known_targets(compose: dict[str, Any]) -> None:
    targets = set(containerfile_targets(CONTAINERFILE.read_text()))
    targets |= set(containerfile_targets(INFRA_CONTAINERFILE.read_text()))
    for name, svc in compose["services"].items():
        default = re.fullmatch(r"\$\{\w+:-localhost/trajectory-([\w-]+):\w+\}", svc["image"])
        assert default, f"{name}: image {svc['image']} has no localhost/trajectory-* default"
        assert default[1] in targets, f"{name}: no build target {default[1]}"


def test_lb_balances_both_replicas_and_retries_only_predictions(
    compose: dict[str, Any]
) -> None:
    """The replicas lb resolves are the compose services; the upstream list is the file the
    entry point writes; only POST /v1/predict may be sent twice (non_idempotent)."""
    lb = compose["services"]["lb"]
    replicas = set(lb["environment"]["LB_REPLICAS"].split())
    assert replicas == {n for n in compose["services"] if n.startswith("serving-")}
    conf = NGINX_CONF.read_text()
    assert "include /tmp/nginx/upstreams.conf;" in conf
    blocks = re.findall(r"location ([^{]+)\{([^}]*)\}", conf)
    retried = [where.strip() for where, body in blocks if "non_idempotent" in body]
    assert retried == ["= /v1/predict"], retried
    assert "proxy_connect_timeout 250ms;" in conf
    assert "./deploy/lb-entrypoint.sh:/usr/local/bin/lb-entrypoint:ro" in lb["volumes"]


def host_port_problems(compose: dict[str, Any]) -> list[str]:
    """Published ports must name an interface: 127.0.0.1, or ${BIND_ADDRESS:-127.0.0.1};
    only lb's prediction port may default to every interface (${LB_BIND:-0.0.0.0})."""
    problems = []
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if name == "lb" and port.startswith("${LB_BIND:-0.0.0.0}:") and port.endswith(":8000"):
                continue
            if not port.startswith(("127.0.0.1:", "${BIND_ADDRESS:-127.0.0.1}:")):
                problems.append(f"{name}: {port} is published on every interface")
    return problems


def test_host_ports_are_local_but_the_prediction_api(compose: dict[str, Any]) -> None:
    assert host_port_problems(compose) == []
    assert "ports" not in compose["services"]["mlflow"]  # through lb, with basic auth
    assert "ports" not in compose["services"]["dask-scheduler"]
    assert host_port_problems({"services": {"mlflow": {"ports": ["5000:5000"]}}}) == [
        "mlflow: 5000:5000 is published on every interface"]


def test_monitoring_is_local_only_reads_its_config_read_only_and_scrapes_real_services(
    compose: dict[str, Any]
) -> None:
    """Prometheus and Alertmanager have no authentication: host ports on 127.0.0.1 only. Their
    configuration comes read-only from deploy/prometheus/; every scrape target is a compose
    service at the port it listens on; one webhook variable for Alertmanager and Airflow."""
    services = compose["services"]
    for name, port, config in (("prometheus", 9090, "prometheus.yml"),
                               ("alertmanager", 9093, "alertmanager.yml")):
        svc = services[name]
        assert svc["ports"] and all(p.startswith("127.0.0.1:") and p.endswith(f":{port}")
                                    for p in svc["ports"]), name
        binds = [v for v in svc["volumes"] if v.startswith("./")]
        assert f"./deploy/prometheus/{config}" in [v.split(":")[0] for v in binds], name
        assert all(v.endswith(":ro") for v in binds), name
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] if job["job_name"] != "prometheus"
               for s in job["static_configs"] for t in s["targets"]}
    assert targets == {"serving-1:8000", "serving-2:8000", "dask-scheduler:8787"}
    for target in targets:
        host, port = target.split(":")
        assert host in services, target
        assert port in " ".join(map(str, [services[host].get("command", ""),
                                          services[host]["healthcheck"]["test"]])), target
    hook = "${ALERT_WEBHOOK_URL:-}"
    assert services["alertmanager"]["environment"]["TRAJ_ALERT_WEBHOOK"] == hook
    for name in [n for n in services if n.startswith("airflow-")]:
        assert services[name]["environment"]["TRAJ_ALERT_WEBHOOK"] == hook, name


def test_deploy_scripts_are_executable() -> None:
    for script in ("build_base_image.sh", "build_images.sh", "podman_smoke.sh", "watchdog.py",
                   "watchdog_drill.sh", "failover_test.sh", "resource_peaks.py"):
        path = REPO / "scripts" / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{path} is not executable"


# --- the checks catch what they are for ------------------------------------------------------

BROKEN_COMPOSE = """
services:
  db:
    image: x
  web:
    image: x
    depends_on: [db]
  api:
    image: x
    depends_on:
      db: {condition: service_healthy}
      web: {condition: service_completed_successfully}
    environment:
      DB_PASSWORD: ${DB_PASSWORD:-postgres}
      API_KEY: ${API_KEY}
      TOKEN_SECRET: ${TOKEN_SECRET:?set it}
"""


def test_checks_fail_on_a_broken_compose_file() -> None:
    broken = load_compose(BROKEN_COMPOSE)
    assert {"db: no healthcheck", "web: no healthcheck"} <= set(healthcheck_problems(broken))
    problems = depends_on_problems(broken)
    assert "web: depends_on is a list (no conditions)" in problems
    assert "api: waits for db to be healthy, it has no healthcheck" in problems
    assert "api: waits for long-running web to complete" in problems
    assert [p.split()[0] for p in secret_problems(BROKEN_COMPOSE)] == ["API_KEY", "DB_PASSWORD"]
    assert required_vars(BROKEN_COMPOSE) == {"TOKEN_SECRET"}


def test_checks_fail_on_a_broken_containerfile() -> None:
    broken = "FROM python:3.11-slim AS base\nRUN pip install x\nFROM base AS serving\nCMD uvicorn app\n"
    problems = containerfile_problems(broken)
    assert "no `ARG BASE_IMAGE=<default>` before the first FROM" in problems
    assert "no target airflow" in problems and "no target worker" in problems
    assert "serving runs as root" in problems
    assert "serving CMD is not exec form uvicorn (PID 1 must get SIGTERM)" in problems
    assert package_copy_problems(broken, "**\n!serving/**\n", ["serving"]) == [
        "serving: not copied into the base stage"]
    assert package_copy_problems("FROM x AS base\nCOPY serving ./serving\n", "**\n",
                                 ["serving"]) == [
        "serving: not in the build context (deploy/containerignore)"]


def test_override_files_name_real_services_and_stay_local(compose: dict[str, Any]) -> None:
    """podman-compose.gpu.yml hands the training containers a GPU through CDI; the Dask
    dashboard override publishes on 127.0.0.1 only."""
    gpu = yaml.safe_load((REPO / "podman-compose.gpu.yml").read_text())["services"]
    assert set(gpu) == {"airflow-scheduler", "dask-worker"} <= set(compose["services"])
    assert all(svc["devices"] == ["nvidia.com/gpu=all"] for svc in gpu.values())
    assert gpu["airflow-scheduler"]["environment"]["TRAJ_DEVICE"] == "${TRAIN_DEVICE:-cuda}"
    dask = yaml.safe_load((REPO / "deploy" / "compose.dask-dashboard.yml").read_text())
    assert host_port_problems(dask) == [] and set(dask["services"]) <= set(compose["services"])


def test_every_service_has_cpu_and_memory_limits(compose: dict[str, Any]) -> None:
    """Sized from benchmarks/resources.json (docs/deployment.md "Resources")."""
    missing = [name for name, svc in compose["services"].items()
               if not (svc.get("cpus") and svc.get("mem_limit"))]
    assert missing == []
