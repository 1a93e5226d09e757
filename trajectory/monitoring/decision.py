"""The retrain / promote / rollback policy, as pure functions of the evaluation's numbers.

- retrain:  the share of drifted features reaches `drift_share_retrain`, or a served model
            version's live ADE exceeds its reference (validation) ADE by `ade_degradation_retrain`
            (relative), each judged only with enough rows;
- promote:  the challenger variant beats the champion in the A/B test (both tests significant,
            lower error) and the sample ratio matches the configured weights;
- rollback: the champion variant's newest version is significantly worse than the version it
            replaced, both served within the window (same per-key tests as the A/B).
Promotion and rollback are applied only when the policy allows it (`auto_promote`,
`auto_rollback`); otherwise they are recommendations. Every decision keeps its numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trajectory.files import write_json_atomic
from trajectory.monitoring.ab import Comparison, SampleRatio
from trajectory.monitoring.drift import DriftResult
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


def drift_reasons(drift: DriftResult | None, policy: MonitoringSettings) -> list[str]:
    """Why drift calls for retraining (empty when it does not, or with too few rows)."""
    if drift is None or drift.n_current < policy.min_drift_rows:
        return []
    if drift.share >= policy.drift_share_retrain:
        names = sorted(k for k, v in drift.drifted.items() if v)
        return [(f"drift: {drift.share:.2f} of features drifted ({', '.join(names)}; "
                 f"{drift.method} threshold {drift.threshold:g}) >= {policy.drift_share_retrain:g}")]
    return []


def degradation_reasons(
    live: list[dict[str, Any]], reference_ade: dict[str, float], policy: MonitoringSettings
) -> list[str]:
    """Why live accuracy calls for retraining: per served version (with a reference ADE, by
    version string) with enough windows, live ADE / reference ADE - 1 >= the threshold."""
    reasons = []
    for row in live:
        version = str(row["model_version"])
        ref = reference_ade.get(version)
        if ref is None or ref <= 0 or row["windows"] < policy.min_live_windows:
            continue
        change = row["ade"] / ref - 1
        if change >= policy.ade_degradation_retrain:
            reasons.append(
                f"degradation: {row['variant']} v{version} live ADE {row['ade']:.3f} m vs "
                f"reference {ref:.3f} m (+{change:.0%} >= +{policy.ade_degradation_retrain:.0%}, "
                f"{row['windows']} windows)"
            )
    return reasons


def promote_action(
    ab: Comparison | None, srm: SampleRatio | None, challenger_version: int | None,
    policy: MonitoringSettings,
) -> Action | None:
    """Promote the challenger when it wins the A/B test without a sample-ratio mismatch."""
    if ab is None or challenger_version is None or not ab.b_better:
        return None
    if srm is not None and srm.mismatch:
        return None
    reason = (f"A/B: {ab.b} {ab.metric} {ab.mean_b:.3f} vs {ab.a} {ab.mean_a:.3f} m, diff "
              f"{ab.diff:+.3f} [{ab.ci_low:+.3f}, {ab.ci_high:+.3f}], Welch p {ab.welch_p:.2g}, "
              f"Mann-Whitney p {ab.mannwhitney_p:.2g}, {ab.n_a}+{ab.n_b} keys")
    return Action("promote", policy.champion_variant, challenger_version, reason,
                  policy.auto_promote)


def rollback_action(
    versions: Comparison | None, previous_version: int | None, policy: MonitoringSettings
) -> Action | None:
    """Roll the champion back when its newest version (b) is significantly worse than the
    version it replaced (a)."""
    if versions is None or previous_version is None or not versions.b_worse:
        return None
    reason = (f"rollback: v{versions.b} {versions.metric} {versions.mean_b:.3f} vs "
              f"v{versions.a} {versions.mean_a:.3f} m, Welch p {versions.welch_p:.2g}, "
              f"Mann-Whitney p {versions.mannwhitney_p:.2g}")
    return Action("rollback", policy.champion_variant, previous_version, reason,
                  policy.auto_rollback)


def decide(
    policy: MonitoringSettings,
    drift: DriftResult | None = None,
    live: list[dict[str, Any]] | None = None,
    reference_ade: dict[str, float] | None = None,
    ab: Comparison | None = None,
    srm: SampleRatio | None = None,
    challenger_version: int | None = None,
    versions: Comparison | None = None,
    previous_version: int | None = None,
) -> Decision:
    """Combine the rules above into one recorded decision."""
    live = live or []
    retrain = drift_reasons(drift, policy) + degradation_reasons(live, reference_ade or {}, policy)
    actions = [a for a in (promote_action(ab, srm, challenger_version, policy),
                           rollback_action(versions, previous_version, policy)) if a is not None]
    reasons = retrain + [a.reason for a in actions]
    if srm is not None and srm.mismatch:
        reasons.append(f"sample-ratio mismatch (p {srm.p_value:.2g}): A/B results not acted on; "
                       f"keys {srm.counts} vs expected {srm.expected}")
    numbers = {
        "drift": drift.to_dict() if drift else None,
        "live": live,
        "reference_ade": reference_ade or {},
        "ab": ab.to_dict() if ab else None,
        "sample_ratio": srm.to_dict() if srm else None,
        "versions": versions.to_dict() if versions else None,
    }
    return Decision(retrain=bool(retrain), reasons=reasons or ["no rule fired"],
                    actions=actions, numbers=numbers,
                    policy=policy.model_dump(exclude={"database_url"}))  # may hold a password


def write_decision(decision: Decision, path: Path) -> Path:
    """Write the decision as JSON atomically."""
    return write_json_atomic(path, decision.to_dict(), default=str)
