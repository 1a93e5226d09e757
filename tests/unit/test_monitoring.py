"""Monitoring: A/B statistics, live ADE/FDE joins, served features, drift and the decision."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajectory.data.windows import WindowSpec
from trajectory.exceptions import DataError
from trajectory.monitoring import ab, live
from trajectory.monitoring.settings import MonitoringSettings
from trajectory.privacy.pseudonym import Pseudonymiser

SPEC = WindowSpec(obs_len=8, pred_len=12, max_neighbours=4, neighbour_radius=5.0)
KEYS = Pseudonymiser(b"monitoring-test-key-of-32-characters")


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> MonitoringSettings:
    for name in ("SERVING_AB_WEIGHTS", "SERVING_DATABASE_URL", "TRAJ_MONITOR_AB_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    return MonitoringSettings(_env_file=None)  # type: ignore[call-arg]


def _errors(means: dict[str, float], keys: int = 30, per_key: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for variant, mean in means.items():
        for k in range(keys):
            key_effect = rng.normal(0, 0.1)  # windows of one key are correlated
            for _ in range(per_key):
                rows.append({"variant": variant, "routing_key_hash": f"{variant}-{k}",
                             "ade": mean + key_effect + rng.normal(0, 0.05)})
    return pd.DataFrame(rows)


# --- A/B -----------------------------------------------------------------------------------

def _per_key(errors: pd.DataFrame, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    means = errors.groupby(["variant", "routing_key_hash"])["ade"].mean()
    return means[a].to_numpy(), means[b].to_numpy()


def test_compare_finds_a_real_difference_with_effect_sizes_and_ci() -> None:
    a, b = _per_key(_errors({"champion": 1.0, "challenger": 0.8}), "champion", "challenger")
    result = ab.compare(a, b, "ade", ("champion", "challenger"))
    assert result.n_a == result.n_b == 30  # keys, not windows
    assert result.b_better and not result.b_worse
    assert result.ci_low < result.diff < result.ci_high < 0
    assert result.cohens_d < -1 and result.rank_biserial < -0.5
    assert result.to_dict()["significant"] is True


def test_compare_does_not_call_noise_significant() -> None:
    a, b = _per_key(_errors({"champion": 1.0, "challenger": 1.0}, seed=3), "champion",
                    "challenger")
    result = ab.compare(a, b, "ade", ("champion", "challenger"))
    assert not result.significant
    assert result.ci_low < 0 < result.ci_high


def test_compare_needs_two_keys_per_side() -> None:
    with pytest.raises(DataError):
        ab.compare(np.array([1.0]), np.array([1.0, 2.0]), "ade", ("a", "b"))


def test_sample_ratio_flags_a_mismatch_only_when_there_is_one() -> None:
    weights = {"champion": 0.5, "challenger": 0.5}
    assert not ab.sample_ratio({"champion": 505, "challenger": 495}, weights).mismatch
    srm = ab.sample_ratio({"champion": 600, "challenger": 400}, weights)
    assert srm.mismatch and srm.expected == {"champion": 500.0, "challenger": 500.0}
    assert not ab.sample_ratio({"champion": 900, "challenger": 100},
                               {"champion": 0.9, "challenger": 0.1}).mismatch


def test_key_counts_are_distinct_keys() -> None:
    assert ab.key_counts(_errors({"a": 1.0, "b": 1.0}, keys=3, per_key=4)) == {"a": 3, "b": 3}


# --- live ADE/FDE --------------------------------------------------------------------------

def _line_tracks(scene: str = "s", agent: int = 1, frames: int = 40, step: int = 10) -> pd.DataFrame:
    f = np.arange(frames) * step
    return pd.DataFrame({"scene": scene, "frame": f, "agent_id": agent,
                         "x": f / step * 0.4, "y": 0.0})


def _log_row(last_frame: int | None, predicted: np.ndarray, *, variant: str = "champion",
             version: str = "1", agent: int = 1, request: str = "r1",
             observed: np.ndarray | None = None, scene: str | None = "s") -> dict:
    if observed is None:
        t = np.arange(8)[::-1]
        observed = np.stack([(last_frame or 0) / 10 * 0.4 - 0.4 * t, np.zeros(8)], -1)
    return {"request_id": request, "created_at": pd.Timestamp("2024-01-01", tz="UTC"),
            "routing_key_hash": KEYS.routing(f"key-{request}"), "variant": variant,
            "assignment": "hash", "shadow": False, "model_name": "m", "model_version": version,
            "scene_key": KEYS.scene(scene), "agent_key": KEYS.agent(scene, agent),
            "pseudonym_key_id": KEYS.key_id, "last_frame": last_frame, "frame_step": 10,
            "observed": observed.tolist(), "predicted": predicted.tolist()}


def _truth_future(last_frame: int, horizon: int = 12) -> np.ndarray:
    steps = last_frame / 10 + np.arange(1, horizon + 1)
    return np.stack([steps * 0.4, np.zeros(horizon)], -1)  # (T, 2)


def test_live_errors_join_ground_truth_on_scene_agent_and_frames() -> None:
    exact = _truth_future(100)[None]  # (K=1, T, 2)
    off = np.stack([_truth_future(150) + [0.0, 1.0], _truth_future(150)])  # (K=2, T, 2)
    rows = pd.DataFrame([
        _log_row(100, exact),
        _log_row(150, off, variant="challenger", version="2", request="r2"),
        _log_row(350, exact, request="r3"),  # future not tracked yet: left out
        _log_row(None, exact, request="r4", scene=None),  # no frame: cannot be joined
    ])
    errors = live.live_errors(rows, _line_tracks(), KEYS)
    assert list(errors["request_id"]) == ["r1", "r2"]
    assert errors.loc[0, "ade"] == pytest.approx(0.0)
    assert errors.loc[1, "ade"] == pytest.approx(1.0) and errors.loc[1, "fde"] == pytest.approx(1.0)
    assert errors.loc[1, "min_ade"] == pytest.approx(0.0)  # the second sample is exact
    assert "observed" not in errors

    summary = {(r["variant"], r["model_version"]): r for r in live.summarize_live(errors)}
    assert summary[("challenger", "2")]["ade"] == pytest.approx(1.0)
    assert summary[("champion", "1")]["windows"] == 1


def test_live_errors_of_nothing_is_an_empty_frame() -> None:
    rows = pd.DataFrame([_log_row(350, _truth_future(350)[None])])
    assert live.live_errors(rows, _line_tracks(), KEYS).empty
    assert live.summarize_live(live.live_errors(rows, _line_tracks(), KEYS)) == []


def test_live_errors_join_on_pseudonyms_of_the_same_key_only() -> None:
    exact = _truth_future(100)[None]  # (K=1, T, 2)
    rows = pd.DataFrame([
        _log_row(100, exact),
        _log_row(100, exact, agent=2, request="other-agent"),  # agent 2 has no track
        _log_row(100, exact, scene="elsewhere", request="other-scene"),
    ])
    assert "scene" not in rows and "agent_id" not in rows  # the log holds no raw ids
    errors = live.live_errors(rows, _line_tracks(), KEYS)
    assert list(errors["request_id"]) == ["r1"]
    rotated = Pseudonymiser(b"another-key-after-a-rotation-32-chars")
    assert live.live_errors(rows, _line_tracks(), rotated).empty  # old rows: unlinkable


def test_pseudonymised_tracks_carry_no_raw_ids() -> None:
    keyed = live.pseudonymise_tracks(_line_tracks(agent=7), KEYS)
    assert "scene" not in keyed and "agent_id" not in keyed
    assert set(keyed["agent_key"]) == {KEYS.agent("s", 7)}
    assert set(keyed["scene_key"]) == {KEYS.scene("s")}


@pytest.mark.parametrize(("dt", "speed"), [(0.4, 1.0), (0.5, 0.8)])
def test_served_features_rebuild_windows_with_request_neighbours(dt: float, speed: float) -> None:
    walk = np.stack([np.arange(8) * 0.4, np.zeros(8)], -1)  # 0.4 m per model step
    rows = pd.DataFrame([
        _log_row(70, walk[None], observed=walk, agent=1),
        _log_row(70, walk[None], observed=walk + [0.0, 2.0], agent=2),
        _log_row(70, walk[None], observed=walk, agent=1, variant="shadow"),  # same input
        _log_row(70, walk[None], observed=walk[:3], agent=3, request="short"),  # too short
    ])
    features = live.served_features(rows, replace(SPEC, dt=dt))  # logged points are dt apart
    assert len(features) == 2
    assert features["speed"].to_numpy() == pytest.approx([speed, speed])
    assert list(features["neighbour_count"]) == [1, 1]
    assert features["nearest_neighbour_distance"].to_numpy() == pytest.approx([2.0, 2.0])


# --- drift (Evidently) ---------------------------------------------------------------------

@pytest.mark.slow
def test_drift_report_flags_doubled_speeds_with_the_method_set(tmp_path: Path) -> None:
    from trajectory.monitoring.drift import drift_report

    rng = np.random.default_rng(0)
    n = 400
    reference = pd.DataFrame({
        "speed": rng.gamma(4, 0.3, n), "acceleration": rng.gamma(2, 0.2, n),
        "heading_change": rng.gamma(1, 0.05, n), "curvature": rng.gamma(1, 0.1, n),
        "neighbour_count": rng.integers(0, 5, n), "nearest_neighbour_distance": rng.gamma(3, 1, n),
    })
    current = reference.sample(300, random_state=1).reset_index(drop=True)
    current["speed"] *= 2
    current["acceleration"] *= 2
    current["curvature"] /= 2
    current.loc[:, "nearest_neighbour_distance"] = np.nan  # empty on one side: skipped
    result = drift_report(reference, current, tmp_path, method="wasserstein", threshold=0.1)
    assert result.method == "wasserstein" and result.threshold == 0.1
    assert result.drifted["speed"] and result.drifted["acceleration"]
    assert not result.drifted["neighbour_count"]
    assert result.skipped == ["nearest_neighbour_distance"]
    assert result.share == pytest.approx(sum(result.drifted.values()) / 5)
    assert Path(result.html_path).stat().st_size > 10_000
    saved = json.loads(Path(result.json_path).read_text())
    assert saved["summary"]["method"] == "wasserstein" and "metrics" in saved["evidently"]


def test_tracks_rebuilt_from_windows_are_the_original_tracks() -> None:
    from trajectory.data.windows import make_windows
    from trajectory.monitoring.truth import tracks_from_windows

    tracks = pd.concat([_line_tracks(agent=1), _line_tracks(agent=2).assign(y=1.0)])
    windows = make_windows(tracks, SPEC)
    rebuilt = tracks_from_windows(windows, {"s": 10}).sort_values(["agent_id", "frame"])
    expected = tracks.sort_values(["agent_id", "frame"])
    assert rebuilt[["frame", "agent_id"]].to_numpy().tolist() == \
        expected[["frame", "agent_id"]].to_numpy().tolist()
    assert rebuilt[["x", "y"]].to_numpy() == pytest.approx(expected[["x", "y"]].to_numpy())
    assert tracks_from_windows(windows, {"other": 10}).empty  # unknown step: not rebuilt
