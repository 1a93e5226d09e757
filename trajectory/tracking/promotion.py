"""Promotion: alias `champion` moves to the challenger only when it is better on the same data.

Both versions are rebuilt from their checkpoints and scored on the same validation windows
(the logged numbers may come from other data), and the decision is recorded with its numbers:
as tags on the challenger version and as `promotion/decision.json` in the challenger's run.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import torch

from trajectory import metrics
from trajectory.config import Settings
from trajectory.data.windows import Windows
from trajectory.exceptions import DataError, TrackingError
from trajectory.models.base import TrajectoryModel, predict
from trajectory.tracking.client import connect, tracking_errors
from trajectory.tracking.registry import CHALLENGER, CHAMPION, load_model, resolve_alias
from trajectory.training.loop import resolve_device

log = logging.getLogger(__name__)

DECISION_ARTIFACT = "promotion/decision.json"


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of one promotion step and the numbers behind it."""

    promoted: bool
    reason: str
    challenger_version: int
    champion_version: int | None  # the champion before this decision
    challenger_val_ade: float
    champion_val_ade: float | None
    min_improvement: float = 0.0
    k: int = 1
    n_windows: int = 0
    val_fingerprint: str = ""  # hash of the validation arrays both models were scored on
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # summarize() per side
    decided_at: str = ""


def decide_promotion(
    challenger_ade: float, champion_ade: float | None, min_improvement: float
) -> tuple[bool, str]:
    """Promote when there is no champion, or the challenger's ADE is lower than the champion's
    by more than `min_improvement` metres; -> (promote, reason)."""
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be >= 0, got {min_improvement}")
    if not math.isfinite(challenger_ade):
        return False, f"challenger ADE is {challenger_ade}, not a finite number"
    if champion_ade is None:
        return True, f"no champion yet; challenger ADE {challenger_ade:.4f} m"
    gain = champion_ade - challenger_ade
    numbers = (f"challenger ADE {challenger_ade:.4f} m vs champion {champion_ade:.4f} m "
               f"(gain {gain:.4f} m, required > {min_improvement:.4f} m)")
    if not math.isfinite(champion_ade) or gain > min_improvement:
        return True, f"challenger is better: {numbers}"
    return False, f"challenger is not better enough: {numbers}"


def promote(
    settings: Settings,
    val_windows: Windows,
    *,
    min_improvement: float | None = None,
    k: int = 1,
) -> PromotionDecision:
    """Score `challenger` and `champion` on `val_windows`; move `champion` if the challenger
    wins (threshold: `min_improvement`, else `settings.promotion_min_improvement`)."""
    if val_windows.fut is None or not len(val_windows):
        raise DataError("promotion needs validation windows with a future")
    threshold = settings.promotion_min_improvement if min_improvement is None else min_improvement
    name = settings.model_name
    challenger = resolve_alias(settings, CHALLENGER)
    if challenger is None:
        raise TrackingError(
            f"registered model {name!r} has no version with alias {CHALLENGER!r} at "
            f"{settings.tracking_uri()}; log and register a model first"
        )
    champion = resolve_alias(settings, CHAMPION)
    device = resolve_device(settings.device)
    scores = {"challenger": _score(load_model(f"models:/{name}/{challenger}", settings,
                                              device).model, val_windows, k, device)}
    if champion is not None and champion != challenger:
        scores["champion"] = _score(load_model(f"models:/{name}/{champion}", settings,
                                               device).model, val_windows, k, device)
    challenger_ade = scores["challenger"]["ade"]
    champion_ade = scores.get("champion", {}).get("ade")
    if champion == challenger:
        promoted, reason = False, f"version {challenger} already holds alias {CHAMPION!r}"
        champion_ade = challenger_ade
    else:
        promoted, reason = decide_promotion(challenger_ade, champion_ade, threshold)
    decision = PromotionDecision(
        promoted=promoted, reason=reason, challenger_version=challenger,
        champion_version=champion, challenger_val_ade=challenger_ade,
        champion_val_ade=champion_ade, min_improvement=threshold, k=k,
        n_windows=len(val_windows), val_fingerprint=fingerprint(val_windows), scores=scores,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _apply(settings, decision)
    log.info("promotion of %r v%d: %s", name, challenger, reason)
    return decision


def fingerprint(windows: Windows) -> str:
    """A short hash of the arrays a model is scored on, to show two scores used the same data."""
    digest = hashlib.sha256()
    for array in (windows.obs, windows.nbr, windows.fut):
        if array is not None:
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _score(
    model: TrajectoryModel, windows: Windows, k: int, device: torch.device
) -> dict[str, float]:
    assert windows.fut is not None, "checked by promote"
    traj, _ = predict(model, windows.obs, windows.nbr, k=k, device=device)  # (N, K, T, 2)
    return metrics.summarize(traj, windows.fut)


def _apply(settings: Settings, decision: PromotionDecision) -> None:
    """Move the alias when promoted, then record the decision on the challenger."""
    client = connect(settings)
    name, version = settings.model_name, str(decision.challenger_version)
    with tracking_errors(f"recording the promotion of {name!r} v{version}"):
        if decision.promoted:
            client.set_registered_model_alias(name, CHAMPION, version)
            if decision.champion_version is not None:
                client.set_model_version_tag(name, str(decision.champion_version),
                                             "promotion.superseded_by", version)
        tags = {
            "promotion.decision": "promoted" if decision.promoted else "rejected",
            "promotion.reason": decision.reason,
            "promotion.val_ade": f"{decision.challenger_val_ade:.6f}",
            "promotion.champion_version": str(decision.champion_version),
            "promotion.champion_val_ade": str(decision.champion_val_ade),
            "promotion.min_improvement": str(decision.min_improvement),
            "promotion.val_fingerprint": decision.val_fingerprint,
            "promotion.decided_at": decision.decided_at,
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        run_id = client.get_model_version(name, version).run_id
        if run_id:
            client.log_dict(run_id, asdict(decision), DECISION_ARTIFACT)
