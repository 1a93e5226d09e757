"""Checkpoints that carry what rebuilds them: model name, model args, weights and metadata."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from trajectory.exceptions import ModelError
from trajectory.models.base import TrajectoryModel, build_model

FORMAT_VERSION = 1


def save_checkpoint(path: Path, model: TrajectoryModel, meta: dict[str, Any]) -> Path:
    """Write atomically (temp file, then rename). `meta` holds plain values only: the train
    config, window spec, data version, metrics... anything `json` could write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "model": model.name,
        "model_args": model.model_args(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[TrajectoryModel, dict[str, Any]]:
    """Rebuild the model with `build_model(name, **model_args)`, load its weights, eval mode."""
    try:
        payload = torch.load(Path(path), map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise ModelError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path} is not a checkpoint of format {FORMAT_VERSION}")
    model = build_model(payload["model"], **payload["model_args"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ModelError(
            f"checkpoint {path} does not fit model {payload['model']!r}: {err}"
        ) from err
    model.to(device).eval()
    return model, payload["meta"]
