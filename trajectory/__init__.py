"""Trajectory prediction: data, models, training and tracking for the platform."""

__version__ = "0.1.0"
