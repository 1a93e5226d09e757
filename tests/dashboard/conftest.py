"""Fixtures of the dashboard tests: a log written by the real service, the dashboard on a port,
headless Chromium (Debian's chromium + chromium-driver; never downloaded at run time)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "serving")]

from seed import (
    ADMIN_KEY,
    PREDICT_KEY,
    VIEWER_KEY,
    Seeded,
    free_port,
    seed,
)

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from serving.config import hash_api_key

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT_ENV = "TRAJ_SCREENSHOT_DIR"


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    data = seed(tmp_path_factory.mktemp("dashboard-seed"))
    yield data
    server, thread = data.stop
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)  # type: ignore[attr-defined]


def dashboard_settings(seeded: Seeded, **overrides: object) -> DashboardSettings:
    values: dict[str, object] = {
        "work_dir": seeded.work_dir,
        "database_url": seeded.database_url,
        "variants": {"champion": "models:/demo-forecaster@champion",
                     "challenger": "models:/demo-forecaster@challenger"},
        "ab_weights": {"champion": 0.5, "challenger": 0.5},
        "api_keys": {hash_api_key(ADMIN_KEY): "admin", hash_api_key(PREDICT_KEY): "predict"},
        "viewer_keys": [hash_api_key(VIEWER_KEY)],
        "replicas": {"serving-1": seeded.serving_url,
                     "serving-2": f"http://127.0.0.1:{free_port()}"},  # nothing listens
        "mlflow_ui_url": "http://mlflow.example:5000",
        "airflow_ui_url": "http://airflow.example:8080",
        "secret_key": "dashboard-test-secret",
    }
    return DashboardSettings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dashboard_url(seeded: Seeded) -> Iterator[str]:
    app = create_app(dashboard_settings(seeded))
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("headless Chromium missing: apt-get install chromium chromium-driver "
                    "(scripts/install_services.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshot_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Where page screenshots go: the pytest tmp dir, and TRAJ_SCREENSHOT_DIR when set."""
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get(SCREENSHOT_ENV):
        dirs.append(Path(os.environ[SCREENSHOT_ENV]))
        dirs[-1].mkdir(parents=True, exist_ok=True)
    return dirs
