"""Decision rules: calibrated drift, live ratio vs CV, balance checks, experiments, decide()."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, create_engine, select

from trajectory.monitoring import ab, decision, drift_rule, evidence, live_rule
from trajectory.monitoring.experiment import current_experiment, estimate
from trajectory.monitoring.sequential import Estimate, sequential_test
from trajectory.monitoring.settings import MonitoringSettings

COLUMNS = ["speed", "acceleration", "heading_change"]


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> MonitoringSettings:
    for name in ("SERVING_AB_WEIGHTS", "SERVING_DATABASE_URL", "TRAJ_MONITOR_AB_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    return MonitoringSettings(_env_file=None)  # type: ignore[call-arg]


def _features(n: int, seed: int, speed: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    scenes = np.repeat(["a", "b", "c"], n // 3)
    level = {"a": 0.8, "b": 1.2, "c": 1.0}
    walk = np.array([level[s] for s in scenes]) + np.cumsum(rng.normal(0, 0.001, len(scenes)))
    frame = pd.DataFrame({
        "speed": speed * (walk + rng.gamma(4, 0.05, len(scenes))),
        "acceleration": rng.gamma(2, 0.2, len(scenes)),
        "heading_change": rng.gamma(1, 0.05, len(scenes)),
    })
    return frame, scenes


# --- drift ---------------------------------------------------------------------------------

def test_thresholds_shrink_with_sample_size_and_stay_above_aa_scores() -> None:
    train, scenes = _features(6000, 0)
    small = drift_rule.calibrate(train, scenes, 50, COLUMNS, blocks=60)
    large = drift_rule.calibrate(train, scenes, 1000, COLUMNS, blocks=60)
    assert all(large[c] < small[c] for c in COLUMNS)


def test_one_large_speed_shift_is_enough_and_noise_is_not() -> None:
    train, scenes = _features(6000, 0)
    thresholds = drift_rule.calibrate(train, scenes, 600, COLUMNS, blocks=60)
    same, _ = _features(600, 1)
    fast, _ = _features(600, 1, speed=1.5)
    calm = drift_rule.judge(drift_rule.scores(train, same, COLUMNS), thresholds, 600, ["speed"], 0.5)
    moved = drift_rule.judge(drift_rule.scores(train, fast, COLUMNS), thresholds, 600, ["speed"],
                             0.5)
    assert not calm.flagged
    assert moved.flagged and moved.drifted["speed"] and "key feature" in moved.reason
    assert not moved.drifted["heading_change"]  # one feature moved, one flagged


def test_persistence_needs_k_flags_in_a_row() -> None:
    assert drift_rule.persistent([False, True, True], 2)
    assert not drift_rule.persistent([True, False, True], 2)
    assert not drift_rule.persistent([True], 2)


def test_drift_retrains_only_when_persistent_and_with_enough_rows(
    policy: MonitoringSettings,
) -> None:
    verdict = drift_rule.DriftVerdict(500, {"speed": 1.0}, {"speed": 0.2}, {"speed": True},
                                      True, "drift at n=500: speed 1.00>0.20 (key feature)")
    assert not decision.decide(policy, drift=verdict, drift_history=[False]).retrain
    made = decision.decide(policy, drift=verdict, drift_history=[True])
    assert made.retrain and made.reasons[0].startswith("drift at n=500")
    few = drift_rule.DriftVerdict(50, {"speed": 1.0}, {"speed": 0.2}, {"speed": True}, True, "x")
    assert not decision.decide(policy, drift=few, drift_history=[True]).retrain
    assert made.numbers["drift_flagged"] and not decision.decide(policy).numbers["drift_flagged"]


# --- live ratio ----------------------------------------------------------------------------

def test_live_ratio_cancels_a_harder_scene_and_catches_a_worse_model() -> None:
    rng = np.random.default_rng(0)
    keys = np.repeat(np.arange(40), 10)
    cv = rng.gamma(4, 0.15, 400)
    model = 0.8 * cv * rng.lognormal(0, 0.1, 400)  # the model: 20% better than CV
    harder = live_rule.live_ratio("3", 2 * model, 2 * cv, keys, 0.8, 0.25)
    assert harder.relative == pytest.approx(1.0, abs=0.05) and not harder.degraded
    worse = live_rule.live_ratio("3", 1.5 * model, cv, keys, 0.8, 0.25)
    assert worse.low > 1.25 and worse.degraded


def test_cv_ade_of_a_straight_walk_is_zero() -> None:
    t = np.arange(20, dtype=float)
    track = np.stack([0.4 * t, np.zeros(20)], -1)[None]  # (1, 20, 2)
    assert live_rule.cv_ade(track[:, :8], track[:, 8:]) == pytest.approx([0.0])


def test_degradation_needs_consecutive_hours(policy: MonitoringSettings) -> None:
    bad = live_rule.LiveRatio("3", 500, 40, 1.0, 0.5, 2.0, 1.0, 2.0, 1.8, 2.2, True)
    assert not decision.decide(policy, live=[bad], live_history=[["3"], []]).retrain
    made = decision.decide(policy, live=[bad], live_history=[["3"], ["3"]])
    assert made.retrain and made.reasons[0].startswith("degradation: v3")
    assert made.numbers["live_degraded"] == ["3"]


# --- A/B decisions -------------------------------------------------------------------------

def _win(design: str = "cuped") -> object:
    return sequential_test(Estimate(design, -0.2, 0.0001, 1.0, 5000, 50_000), 0.05, 0.02, 0.1,
                           0.8, 100)


def test_promotion_needs_a_win_the_recorded_weights_and_balanced_joins(
    policy: MonitoringSettings,
) -> None:
    win = _win()
    fine = ab.sample_ratio({"champion": 500, "challenger": 500}, {"champion": .5, "challenger": .5})
    joins = ab.join_balance({"champion": 1000, "challenger": 1000},
                            {"champion": 800, "challenger": 805})
    made = decision.decide(policy, ab=win, srm=fine, joins=joins, challenger_version=7)
    assert [(a.kind, a.version, a.apply) for a in made.actions] == [("promote", 7, False)]
    auto = policy.model_copy(update={"auto_promote": True})
    assert decision.decide(auto, ab=win, srm=fine, joins=joins, challenger_version=7).actions[0].apply
    unknown = decision.decide(policy, ab=win, srm=None, joins=joins, challenger_version=7)
    assert unknown.actions == [] and "not promoted" in unknown.reasons[-1]
    bad_joins = ab.join_balance({"champion": 1000, "challenger": 1000},
                                {"champion": 800, "challenger": 600})
    assert bad_joins.mismatch
    assert decision.decide(policy, ab=win, srm=fine, joins=bad_joins,
                           challenger_version=7).actions == []
    paired = decision.decide(policy, ab=_win("paired"), srm=None, joins=joins, challenger_version=7)
    assert [a.kind for a in paired.actions] == ["promote"]  # same requests: no ratio to check


def test_rollback_needs_evidence_that_the_new_version_is_worse(policy: MonitoringSettings) -> None:
    worse = sequential_test(Estimate("paired", 0.3, 0.0001, 1.0, 5000, 50_000), 0.05, 0.02, 0.1,
                            0.8, 100)
    made = decision.decide(policy, versions=worse, previous_version=4)
    assert [(a.kind, a.alias, a.version) for a in made.actions] == [("rollback", "champion", 4)]
    assert decision.decide(policy, versions=_win(), previous_version=4).actions == []


def _rows(n_keys: int, shadow: bool, gain: float, seed: int = 0) -> pd.DataFrame:
    """Served rows of a 50/50 split; with `shadow`, the other variant scored every request too."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_keys):
        variant = "champion" if k % 2 else "challenger"
        level = rng.gamma(4, 0.25)
        for w in range(5):
            base = level * rng.lognormal(0, 0.2)
            errors = {"champion": base, "challenger": base * (1 - gain)}
            for v in (["champion", "challenger"] if shadow else [variant]):
                out.append({"request_id": f"r{k}-{w}", "agent_key": "a", "routing_key_hash": f"k{k}",
                            "variant": v, "model_version": {"champion": "4", "challenger": "7"}[v],
                            "shadow": v != variant, "assignment": "shadow" if v != variant
                            else "hash", "ade": errors[v]})
    return pd.DataFrame(out)


def test_shadow_pairs_are_tested_as_paired_differences() -> None:
    paired = estimate(_rows(60, True, 0.1), ("variant", "champion"), ("variant", "challenger"),
                      "ade")
    split = estimate(_rows(60, False, 0.1), ("variant", "champion"), ("variant", "challenger"),
                     "ade")
    assert paired is not None and split is not None
    assert paired.design == "paired" and split.design == "unpaired"
    assert paired.keys == 60 and paired.diff < 0
    assert paired.variance < split.variance / 10


def test_experiment_is_opened_on_a_version_change_and_keeps_its_weights() -> None:
    engine = create_engine("sqlite://")
    table = Table("experiments", MetaData(), Column("id", String(32), primary_key=True),
                  Column("started_at", DateTime(timezone=True)), Column("weights", JSON),
                  Column("versions", JSON), Column("source", String(16)))
    table.metadata.create_all(engine)
    now = datetime(2024, 1, 2, tzinfo=UTC)
    with engine.begin() as conn:  # the admin route: new weights, versions not known yet
        conn.execute(table.insert(), [{"id": "admin1", "started_at": now - timedelta(days=1),
                                       "weights": {"champion": .5, "challenger": .5},
                                       "versions": {}, "source": "admin"}])
    rows = _rows(4, False, 0.0).assign(created_at=now - timedelta(hours=1))
    first = current_experiment(engine, rows, {"champion": 1.0}, now)
    assert first.id == "admin1" and first.versions == {"champion": "4", "challenger": "7"}
    assert current_experiment(engine, rows, {"champion": 1.0}, now).id == "admin1"
    moved = rows.assign(model_version=np.where(rows["variant"] == "challenger", "8", "4"),
                        created_at=now - timedelta(minutes=30))
    second = current_experiment(engine, moved, {"champion": 1.0}, now)
    assert second.id != "admin1" and second.versions["challenger"] == "8"
    assert second.weights == {"champion": .5, "challenger": .5}
    assert second.started_at == now - timedelta(minutes=30)
    with engine.connect() as conn:
        assert len(conn.execute(select(table)).all()) == 2


def test_history_reads_earlier_decisions_in_order(tmp_path: Path,
                                                  policy: MonitoringSettings) -> None:
    for name, flagged in (("20240101T000000", True), ("20240101T010000", False),
                          ("20240101T020000", True), ("20240101T040000", True)):
        made = decision.decide(policy)
        made.numbers["drift_flagged"] = flagged
        made.numbers["live_degraded"] = ["3"] if flagged else []
        decision.write_decision(made, tmp_path / name / "decision.json")
    flags, degraded = evidence.history(tmp_path, "20240101T030000", 2)
    assert flags == [False, True] and degraded == [[], ["3"]]
    saved = json.loads((tmp_path / "20240101T000000" / "decision.json").read_text())
    assert saved["policy"]["ab_min_improvement"] == policy.ab_min_improvement


def test_job_evidence_tests_the_experiment_and_the_previous_version(
    policy: MonitoringSettings,
) -> None:
    from trajectory.monitoring.experiment import Experiment

    rows = _rows(400, True, 0.15)
    older = rows[rows["variant"] == "champion"].assign(model_version="3", variant="shadow-v3",
                                                       shadow=True, assignment="shadow",
                                                       ade=lambda f: f["ade"] * 0.7)
    errors = pd.concat([rows, older], ignore_index=True)
    experiment = Experiment("e1", datetime(2024, 1, 1, tzinfo=UTC),
                            {"champion": 0.5, "challenger": 0.5}, {"champion": "4",
                                                                   "challenger": "7"})
    found = evidence.comparisons(errors, errors.iloc[:0], experiment, policy)
    assert found["ab"].estimate.design == "paired" and found["ab"].b_better
    assert found["challenger_version"] == 7 and found["previous_version"] == 3
    assert found["versions"].b_worse  # v4 errs 1/0.7 x as much as v3 on the same requests
    checks = evidence.balance(errors, errors, experiment, policy)
    assert checks["srm"] is not None and not checks["srm"].mismatch
    assert checks["joins"] is not None and not checks["joins"].mismatch
    made = decision.decide(policy, srm=checks["srm"], joins=checks["joins"], **found)
    assert [a.kind for a in made.actions] == ["promote", "rollback"]
