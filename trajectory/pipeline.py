"""The main job as composable steps: ETL -> train -> evaluate -> register -> promote.

The CLI (`trajectory run`, `trajectory train`, `trajectory promote`) and the Airflow DAGs call
these functions; each step is one call into the data, training or tracking modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import typer

from trajectory.config import Settings
from trajectory.data.windows import WindowSpec

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What a run produced and where to find it."""

    windows_dir: Path
    data_version: str
    model: str
    run_id: str
    version: int
    metrics: dict[str, dict[str, float]]  # split -> metric -> value (our model)
    baseline: dict[str, float]  # constant velocity on the test split
    decision: Any | None = None  # tracking.PromotionDecision
    counts: dict[str, int] = field(default_factory=dict)  # windows per split


def run_pipeline(
    settings: Settings,
    data_dir: Path | None = None,
    model: str | None = None,
    epochs: int | None = None,
) -> PipelineResult:
    """Run every step. Without `data_dir` (or TRAJ_DATA_DIR), a synthetic crowd is made first."""
    from trajectory.data.etl import run_etl

    raw = data_dir or settings.data_dir or make_synthetic(settings)
    windows_dir = settings.windows_dir
    etl = run_etl(raw, windows_dir, settings)
    log.info("ETL done: data version %s", etl.data_version)
    return train_and_register(settings, windows_dir, model=model, epochs=epochs, promote=True)


def make_synthetic(settings: Settings) -> Path:
    """Write (once) the built-in synthetic crowd under the work dir and return its folder."""
    from trajectory.data.simulate import simulate_crowd

    raw = settings.work_dir / "raw" / "synthetic"
    if not raw.exists() or not any(raw.rglob("*.txt")):
        simulate_crowd(raw, seed=settings.seed)
    return raw


def train_and_register(
    settings: Settings,
    windows_dir: Path,
    model: str | None = None,
    epochs: int | None = None,
    promote: bool = True,
) -> PipelineResult:
    """Train on an ETL output, evaluate, log to MLflow, register as challenger, maybe promote."""
    from trajectory import tracking
    from trajectory.data.dataset import load_windows, read_manifest
    from trajectory.training import TrainConfig, train
    from trajectory.training.evaluate import run_metrics, score_model

    spec = WindowSpec.from_settings(settings)
    manifest = read_manifest(windows_dir)
    data_version = manifest["data_version"]
    splits = {s: load_windows(windows_dir, spec, split=s) for s in ("train", "val", "test")}
    counts = {s: len(w) for s, w in splits.items()}
    log.info("windows per split: %s", counts)

    tracking.configure(settings)
    config = TrainConfig.load(device=settings.device, seed=settings.seed)
    if model is not None and model != config.model:  # not the configured model: its defaults
        config = replace(config, model=model, model_args={})
    if epochs:
        config = replace(config, epochs=epochs)
    out_dir = settings.work_dir / "checkpoints" / data_version
    result = train(splits["train"], splits["val"], config, out_dir)
    # the one full scoring (K=1 and best-of-20, brier-minFDE, miss rate, NLL scaled on val)
    val = splits["val"]
    metrics = {
        s: run_metrics(score_model(result.model, splits[s], val=val)) for s in ("val", "test")
    }
    baseline = run_metrics(score_model(_cv(spec), splits["test"], val=val))
    run_id = tracking.log_training(
        settings,
        result=result,
        train_config=config,
        spec=spec,
        data_version=data_version,
        val_metrics=metrics["val"],
        test_metrics=metrics["test"],
        sample_windows=splits["test"],
        extra_params={
            "config_provenance": TrainConfig.provenance(),
            "calibration": result.calibration,
        },
    )
    version = tracking.register(settings, run_id)
    decision = tracking.promote(settings, splits["val"]) if promote else None
    return PipelineResult(
        windows_dir=windows_dir,
        data_version=data_version,
        model=config.model,
        run_id=run_id,
        version=version,
        metrics=metrics,
        baseline=baseline,
        decision=decision,
        counts=counts,
    )


def promote_on(settings: Settings, windows_dir: Path, min_improvement: float | None = None) -> Any:
    """The promotion gate on an ETL output's validation split."""
    from trajectory import tracking
    from trajectory.data.dataset import load_windows

    tracking.configure(settings)
    val = load_windows(windows_dir, WindowSpec.from_settings(settings), split="val")
    return tracking.promote(settings, val, min_improvement=min_improvement)


def _cv(spec: WindowSpec):
    from trajectory.models import build_model

    return build_model("cv", obs_len=spec.obs_len, pred_len=spec.pred_len)


def print_summary(result: PipelineResult, settings: Settings) -> None:
    """What was produced and where to look, for a person at a terminal."""
    uri = settings.tracking_uri()
    echo = typer.echo
    echo("")
    echo(f"data version   {result.data_version}  ({result.windows_dir})")
    echo("windows        " + ", ".join(f"{s} {n}" for s, n in result.counts.items()))
    echo(f"model          {settings.model_name} version {result.version} ({result.model})")
    echo(f"mlflow run     {result.run_id}")
    if result.decision is not None:
        verdict = "promoted to @champion" if result.decision.promoted else "champion kept"
        echo(f"promotion      {verdict}: {result.decision.reason}")
    echo("")
    echo(f"{'metric':<16}{'val':>8}{'test':>8}{'test CV':>9}")
    for key, label in [("ade", "ADE K=1 (m)"), ("fde", "FDE K=1 (m)"),
                       ("min_ade", "ADE best-20"), ("min_fde", "FDE best-20"),
                       ("brier_min_fde_20", "brier-minFDE-20"), ("nll", "NLL per point"),
                       ("miss_rate_20", "miss rate 20")]:
        row = [result.metrics[s].get(key, float("nan")) for s in ("val", "test")]
        cv = result.baseline.get(key, float("nan"))
        echo(f"{label:<16}{row[0]:>8.3f}{row[1]:>8.3f}{cv:>9.3f}")
    echo("")
    if uri.startswith("sqlite:"):
        echo(f"MLflow UI:     .venv/bin/mlflow ui --backend-store-uri {uri}")
    else:
        echo(f"MLflow UI:     {uri}")
    echo(f"model URI:     models:/{settings.model_name}@champion")
