"""Fixtures for app tests: settings on a temp dir, a fake registry, a running TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_testkit import FakeRegistry, TestClient, make_settings

from serving.config import ServingSettings
from serving.main import create_app


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def settings(tmp_path: Path) -> ServingSettings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: ServingSettings, registry: FakeRegistry) -> Iterator[TestClient]:
    with TestClient(create_app(settings, model_source=registry)) as c:
        yield c
