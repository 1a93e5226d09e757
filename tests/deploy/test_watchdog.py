"""scripts/watchdog.py: which container deaths it undoes (pure event logic; the drill with real
containers is scripts/failover_test.sh)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "watchdog.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("watchdog", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def feed(events: list[tuple[str, str]]) -> list[str | None]:
    dog = load().Watchdog("trajectory", tick=5, cooldown=120)
    return [dog.killed_and_died({"Name": name, "Status": status}) for name, status in events]


def test_a_killed_container_is_started_again() -> None:
    assert feed([("serving-1", "kill"), ("serving-1", "died")]) == [None, "serving-1"]


def test_a_stopped_container_is_left_down() -> None:
    # `podman stop` (even when it ends in SIGKILL) sends no kill event
    assert feed([("serving-1", "died"), ("serving-1", "cleanup")]) == [None, None]


def test_a_kill_counts_only_until_the_next_start_and_per_container() -> None:
    events = [("serving-1", "kill"), ("serving-1", "start"), ("serving-1", "died"),
              ("serving-2", "kill"), ("serving-1", "died"), ("serving-2", "died"),
              ("serving-2", "died")]
    assert feed(events) == [None, None, None, None, None, "serving-2", None]
