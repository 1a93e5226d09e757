"""One MLflow run per training: params, data version, metrics, plots, checkpoint and model."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.models.model import ModelInfo

import trajectory
from trajectory.config import Settings
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ModelError
from trajectory.models.base import predict
from trajectory.tracking import pyfunc
from trajectory.tracking.client import configure, tracking_errors
from trajectory.training.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"  # name of the pyfunc model logged in each run
CHECKPOINT_DIR = "checkpoint"  # run artifact folder holding the training checkpoint
MODEL_URI_TAG = "trajectory.model_uri"  # run tag: the logged model's URI, used to register it
PLOT_WINDOWS = 6
PLOT_K = 20
_MAX_PARAM = 6000  # MLflow's limit on a param value; the full config is in config/run.json
_REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pydantic", "pydantic-settings")


def log_training(
    settings: Settings,
    *,
    result: TrainResult,
    train_config: TrainConfig | Mapping[str, Any],
    spec: WindowSpec,
    data_version: str,
    val_metrics: Mapping[str, float],
    test_metrics: Mapping[str, float] | None = None,
    sample_windows: Windows | None = None,
    extra_params: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> str:
    """Log a finished training (or an untrained model such as "cv") as one run; -> run id.

    Metrics: per epoch (step = epoch) `train_loss` and `epoch_<key>` for the other history
    keys (epoch_val_ade, epoch_seconds...); `val_<key>` and `test_<key>` from the final
    evaluations (ade, fde: K=1; min_ade, min_fde: best-of-K); `train_seconds`, `best_epoch`.
    Artifacts: `config/run.json`, `plots/*.png`, `checkpoint/<file>`, and the pyfunc model
    `model` with signature and input example. `train_config` is a TrainConfig or a mapping.
    """
    checkpoint = Path(result.checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint {checkpoint} does not exist")
    experiment_id = configure(settings)
    model = result.model
    commit = git_commit()
    description = {
        "train_config": _as_dict(train_config),
        "window_spec": asdict(spec),
        "data_version": data_version,
        "model": {"name": model.name, "args": model.model_args()},
        "device": result.device,
        "best_epoch": result.best_epoch,
        "code_version": trajectory.__version__,
        "git_commit": commit,
        "extra": dict(extra_params or {}),
    }
    params = flatten(
        {
            "config": description["train_config"],
            "spec": description["window_spec"],
            "model": description["model"],
            "data_version": data_version,
            "device": result.device,
            "code_version": trajectory.__version__,
            "git_commit": commit or "unknown",
        }
        | dict(extra_params or {})
    )
    tags = {"data_version": data_version, "model": model.name,
            "code_version": trajectory.__version__}
    metrics = final_metrics(val_metrics, test_metrics, result.seconds, result.best_epoch)

    with (
        tracking_errors("logging the training run"),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run,
    ):
        run_id = run.info.run_id
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        mlflow.tracking.MlflowClient().log_batch(run_id, metrics=epoch_metrics(result.history))
        mlflow.log_metrics(metrics)
        mlflow.log_dict(description, "config/run.json")
        _log_plots(result, sample_windows)
        mlflow.log_artifact(str(checkpoint), CHECKPOINT_DIR)
        info = _log_pyfunc(checkpoint, spec, sample_windows)
        mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    log.info("logged run %s (%s, data %s): val ade %s", run_id, model.name, data_version,
             metrics.get("val_ade"))
    return run_id


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> dotted keys; values as text (lists as JSON), cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten(value, f"{name}.")
            continue
        text = json.dumps(value) if isinstance(value, list | tuple | Mapping) else str(value)
        out[name] = text[:_MAX_PARAM]
    return out


def epoch_metrics(history: list[dict[str, float]]) -> list[Metric]:
    """History rows as metrics at step = epoch: `train_loss`, and `epoch_<key>` for the rest,
    since `val_<key>` names the final evaluation of the best weights."""
    now = int(time.time() * 1000)
    return [
        Metric(_epoch_name(key), float(value), now, int(row["epoch"]))
        for row in history
        for key, value in row.items()
        if key != "epoch"
    ]


def _epoch_name(key: str) -> str:
    return key if key == "train_loss" else f"epoch_{key}"


def final_metrics(
    val: Mapping[str, float],
    test: Mapping[str, float] | None,
    seconds: float,
    best_epoch: int,
) -> dict[str, float]:
    """`val_*` and `test_*` evaluations plus training time and best epoch."""
    out = {f"val_{k}": float(v) for k, v in val.items()}
    out |= {f"test_{k}": float(v) for k, v in (test or {}).items()}
    return out | {"train_seconds": float(seconds), "best_epoch": float(best_epoch)}


def _as_dict(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    return asdict(config) if isinstance(config, TrainConfig) else dict(config)


def git_commit() -> str | None:
    """The commit of the checkout the code runs from, if it is one."""
    root = Path(trajectory.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root, capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _log_plots(result: TrainResult, windows: Windows | None) -> None:
    from trajectory import plots  # matplotlib: not in the service, which imports this package

    if result.history:
        mlflow.log_figure(plots.history_figure(result.history, result.model.name),
                          "plots/history.png")
    if windows is None or windows.fut is None or not len(windows):
        return
    sample = windows.take(np.arange(min(PLOT_WINDOWS, len(windows))))
    fut = windows.fut[: len(sample)]  # (n, T_pred, 2)
    traj, weights = predict(result.model, sample.obs, sample.nbr, k=PLOT_K, device=result.device)
    fig = plots.sample_figure(sample.obs, fut, traj, weights, sample.nbr,
                              title=f"{result.model.name}: {PLOT_K} samples, most likely dashed")
    mlflow.log_figure(fig, "plots/samples.png")


def _log_pyfunc(checkpoint: Path, spec: WindowSpec, windows: Windows | None) -> ModelInfo:
    with tempfile.TemporaryDirectory() as tmp:
        entry = Path(tmp) / "trajectory_pyfunc.py"
        entry.write_text(pyfunc.ENTRY_SCRIPT)
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(entry),
            artifacts={pyfunc.CHECKPOINT_KEY: str(checkpoint)},
            signature=pyfunc.model_signature(spec),
            input_example=pyfunc.input_example(spec, windows),
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    """Pinned from this environment, so MLflow does not spawn a process to infer them. The
    `trajectory` package itself must be installed where the model is loaded."""
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out
