"""Experiment tracking and the model registry: the only package that imports mlflow.

`configure` connects (MLFLOW_TRACKING_URI, else embedded SQLite under work_dir);
`log_training` logs a run; `register` adds a registry version under alias `challenger`;
`promote` moves `champion` when the challenger wins on the same validation windows;
`load_model` / `resolve_alias` give the service the torch model behind an alias;
`log_evaluation`, `reference_ade` and `set_alias` serve the scheduled evaluation;
`SearchTracker` makes the parent and nested trial runs of `trajectory tune`.
"""

from trajectory.tracking.client import configure
from trajectory.tracking.evaluation import log_evaluation, reference_ade, set_alias
from trajectory.tracking.promotion import PromotionDecision, decide_promotion, promote
from trajectory.tracking.pyfunc import TrajectoryPyfunc, serving_payload
from trajectory.tracking.registry import (
    CHALLENGER,
    CHAMPION,
    LoadedModel,
    load_model,
    parse_model_uri,
    register,
    resolve_alias,
)
from trajectory.tracking.runs import log_training
from trajectory.tracking.tuning import SearchTracker, tuning_settings

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LoadedModel",
    "PromotionDecision",
    "SearchTracker",
    "TrajectoryPyfunc",
    "configure",
    "decide_promotion",
    "load_model",
    "log_evaluation",
    "log_training",
    "parse_model_uri",
    "promote",
    "reference_ade",
    "register",
    "resolve_alias",
    "serving_payload",
    "set_alias",
    "tuning_settings",
]
