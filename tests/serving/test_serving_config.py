"""Settings fail fast with the variable's name; keys are only ever stored hashed."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import ServingSettings, hash_api_key, load_serving_settings
from trajectory.exceptions import ConfigError


def test_plain_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_API_KEYS", '{"my-secret-key": "admin"}')
    with pytest.raises(ConfigError, match="SHA-256"):
        load_serving_settings()


def test_missing_keys_stop_start_up_unless_auth_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVING_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="SERVING_API_KEYS"):
        load_serving_settings()
    assert load_serving_settings(auth_required=False).api_keys == {}


def test_weights_must_name_known_variants_and_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_serving_settings(auth_required=False, ab_weights={"ghost": 1.0})
    with pytest.raises(ConfigError, match="sum to 1"):
        load_serving_settings(
            auth_required=False,
            variants={"a": "builtin:cv", "b": "builtin:cv"},
            ab_weights={"a": 0.5, "b": 0.6},
        )
    with pytest.raises(ConfigError, match="SERVING_MAX_AGENTS"):
        load_serving_settings(auth_required=False, max_agents=0)


def test_env_configures_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVING_VARIANTS", '{"a": "builtin:cv", "b": "models:/m@challenger"}')
    monkeypatch.setenv("SERVING_AB_WEIGHTS", '{"a": 0.9, "b": 0.1}')
    monkeypatch.setenv("SERVING_API_KEYS", f'{{"{hash_api_key("k")}": "predict"}}')
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    s = ServingSettings()
    assert s.default_variant == "a" and s.ab_weights == {"a": 0.9, "b": 0.1}
    assert s.resolved_database_url() == f"sqlite:///{tmp_path.resolve()}/serving.db"
