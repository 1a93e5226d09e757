"""The retrain / promote / rollback policy, as pure functions of the evaluation's numbers.

- retrain:  drift (`drift_rule`: calibrated per-feature thresholds at the current sample size,
            speed alone or `drift_share_retrain` of the features) in `drift_persistence`
            consecutive evaluations with at least `min_drift_rows` served windows; or live
            degradation (`live_rule`: model ADE / constant-velocity ADE on the same windows,
            bootstrap lower bound above 1 + `ade_degradation_retrain` times the validation
            ratio) in `live_persistence` consecutive evaluations;
- promote:  the experiment's always-valid one-sided test (`sequential`) shows the challenger
            better by more than `ab_min_improvement` with its planned keys, the key ratio
            matches the recorded weights, and the ground-truth join rate is the same per variant;
- rollback: the champion's version is shown worse than the version it replaced by the same
            always-valid test on a randomised split or shadow scores of both versions (never a
            before/after comparison, which confounds the version with the traffic).
Promotion and rollback are applied only when the policy allows it (`auto_promote`,
`auto_rollback`); otherwise they are recommendations. Every decision keeps its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trajectory.files import write_json_atomic
from trajectory.monitoring.ab import SampleRatio
from trajectory.monitoring.drift import DriftResult
from trajectory.monitoring.drift_rule import DriftVerdict, persistent
from trajectory.monitoring.live_rule import LiveRatio
from trajectory.monitoring.sequential import SequentialTest
from trajectory.monitoring.settings import MonitoringSettings


@dataclass(frozen=True)
class Action:
    """An alias change: point `alias` at `version` (recommended, applied when `apply`)."""

    kind: str  # promote | rollback
    alias: str
    version: int
    reason: str
    apply: bool


@dataclass
class Decision:
    """What the evaluation concluded, why, and the numbers and policy behind it."""

    retrain: bool
    reasons: list[str]
    actions: list[Action]
    numbers: dict[str, Any]
    policy: dict[str, Any]
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_reasons(verdict: DriftVerdict | None, history: Sequence[bool],
                  policy: MonitoringSettings) -> list[str]:
    """Why drift calls for retraining: flagged now and in the previous evaluations (`history`,
    oldest first), `drift_persistence` in a row; never with fewer than `min_drift_rows`."""
    if verdict is None or verdict.n_current < policy.min_drift_rows or not verdict.flagged:
        return []
    if not persistent([*history, True], policy.drift_persistence):
        return []
    return [f"{verdict.reason}; {policy.drift_persistence} evaluations in a row"]


def degradation_reasons(ratios: Sequence[LiveRatio], history: Sequence[Sequence[str]],
                        policy: MonitoringSettings) -> list[str]:
    """Why live accuracy calls for retraining: a version degraded now and in the previous
    `live_persistence - 1` evaluations (`history`: degraded versions per evaluation)."""
    reasons = []
    for r in ratios:
        if r.windows < policy.min_live_windows or not r.degraded:
            continue
        flags = [r.version in set(h) for h in history] + [True]
        if persistent(flags, policy.live_persistence):
            reasons.append(
                f"degradation: v{r.version} ADE/CV-ADE {r.ratio:.3f} is {r.relative:.2f}x its "
                f"validation ratio {r.reference:.3f} (CI {r.low:.2f}-{r.high:.2f} > "
                f"{1 + policy.ade_degradation_retrain:.2f}, {policy.live_persistence} evaluations, "
                f"{r.windows} windows, {r.keys} keys)")
    return reasons


def _describe(test: SequentialTest) -> str:
    e = test.estimate
    return (f"{e.design} diff {e.diff:+.4f} m, always-valid {1 - test.alpha:.0%} CI "
            f"[{test.low:+.4f}, {test.high:+.4f}], margin {test.margin:.4f}, "
            f"{e.keys} of {test.planned_keys} planned keys, {e.windows} windows")


def promote_action(test: SequentialTest | None, srm: SampleRatio | None,
                   joins: SampleRatio | None, challenger_version: int | None,
                   policy: MonitoringSettings) -> Action | None:
    """Promote the challenger when it wins the experiment and the balance checks pass: the
    key ratio against the recorded weights (unknown counts as failed; a paired shadow test
    scores both on the same requests and needs none) and the join rate per variant."""
    if test is None or challenger_version is None or not test.b_better:
        return None
    randomised = test.estimate.design != "paired"
    if (randomised and (srm is None or srm.mismatch)) or joins is None or joins.mismatch:
        return None
    return Action("promote", policy.champion_variant, challenger_version,
                  f"A/B: challenger better, {_describe(test)}", policy.auto_promote)


def rollback_action(test: SequentialTest | None, previous_version: int | None,
                    policy: MonitoringSettings) -> Action | None:
    """Roll the champion back when its version (b) is shown worse than the previous one (a)."""
    if test is None or previous_version is None or not test.b_worse:
        return None
    return Action("rollback", policy.champion_variant, previous_version,
                  f"rollback: champion worse than v{previous_version}, {_describe(test)}",
                  policy.auto_rollback)


def decide(
    policy: MonitoringSettings,
    *,
    drift: DriftVerdict | None = None,
    drift_history: Sequence[bool] = (),
    live: Sequence[LiveRatio] = (),
    live_history: Sequence[Sequence[str]] = (),
    ab: SequentialTest | None = None,
    srm: SampleRatio | None = None,
    joins: SampleRatio | None = None,
    challenger_version: int | None = None,
    versions: SequentialTest | None = None,
    previous_version: int | None = None,
    report: DriftResult | None = None,
    notes: Sequence[str] = (),
) -> Decision:
    """Combine the rules above into one recorded decision."""
    retrain = drift_reasons(drift, drift_history, policy)
    retrain += degradation_reasons(live, live_history, policy)
    actions = [a for a in (promote_action(ab, srm, joins, challenger_version, policy),
                           rollback_action(versions, previous_version, policy)) if a is not None]
    reasons = retrain + [a.reason for a in actions] + list(notes)
    if ab is not None and ab.b_better and not actions:
        reasons.append("challenger better, not promoted: sample-ratio or join-rate check "
                       f"failed or unknown (keys {srm.to_dict() if srm else None}, "
                       f"joins {joins.to_dict() if joins else None})")
    numbers = {
        "drift": drift.to_dict() if drift else None,
        "drift_flagged": bool(drift and drift.flagged and drift.n_current >= policy.min_drift_rows),
        "drift_report": report.to_dict() if report else None,
        "live": [r.to_dict() for r in live],
        "live_degraded": [r.version for r in live
                          if r.degraded and r.windows >= policy.min_live_windows],
        "ab": ab.to_dict() if ab else None,
        "sample_ratio": srm.to_dict() if srm else None,
        "join_balance": joins.to_dict() if joins else None,
        "versions": versions.to_dict() if versions else None,
    }
    return Decision(retrain=bool(retrain), reasons=reasons or ["no rule fired"],
                    actions=actions, numbers=numbers,
                    policy=policy.model_dump(exclude={"database_url", "pseudonym_key"}))  # secrets


def write_decision(decision: Decision, path: Path) -> Path:
    """Write the decision as JSON atomically."""
    return write_json_atomic(path, decision.to_dict(), default=str)
