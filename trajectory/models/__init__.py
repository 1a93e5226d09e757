"""Trajectory models behind one interface; `build_model(name, **args)` makes any of them."""

from trajectory.models.base import Prediction, TrajectoryModel, build_model, model_names, predict

__all__ = ["Prediction", "TrajectoryModel", "build_model", "model_names", "predict"]
