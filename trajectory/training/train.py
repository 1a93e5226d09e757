"""`train`: the one training entry point used by the CLI, the benchmark and the DAGs."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ConfigError, DataError
from trajectory.models.base import TrajectoryModel, build_model
from trajectory.training import loop
from trajectory.training.checkpoint import save_checkpoint
from trajectory.training.evaluate import evaluate

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model.pt"
# The one training configuration: `trajectory run`, the train DAG and the ETH/UCY benchmark all
# start from it; `trajectory tune` rewrites it (under version control) with the best trial.
CONFIG_PATH = Path(__file__).with_name("config.json")


@dataclass
class TrainConfig:
    """What a training run needs besides its data. `model_args` go to `build_model`; obs_len
    and pred_len are taken from the windows."""

    model: str = "mixture"
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8
    device: str = "auto"
    seed: int = 0
    num_threads: int | None = None
    max_train_windows: int | None = None
    val_k: int = 20
    warmup_steps: int = 200
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.patience < 1 or self.lr <= 0:
            raise ConfigError(f"invalid training config: {self}")

    @staticmethod
    def provenance(path: Path = CONFIG_PATH) -> Any:
        """The `provenance` note of a configuration file: which search (or person) set it."""
        try:
            return json.loads(Path(path).read_text()).get("provenance")
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the training configuration: {err}") from err

    @classmethod
    def load(cls, path: Path = CONFIG_PATH, **overrides: Any) -> TrainConfig:
        """The training configuration in `path` (default: the project's one), with overrides;
        keys that are not fields (such as `provenance`) are notes for the reader."""
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the training configuration: {err}") from err
        fields = {f for f in cls.__dataclass_fields__}
        unknown = set(overrides) - fields
        if unknown:
            raise ConfigError(f"unknown training config fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in fields} | overrides)


@dataclass
class TrainResult:
    model: TrajectoryModel  # best-validation weights loaded, eval mode
    history: list[dict[str, float]]
    best_epoch: int  # 0 when nothing was trained
    seconds: float
    calibration: dict[str, float]  # what `model.calibrate` fitted on validation ({}: nothing)
    device: str
    checkpoint: Path


def train(
    train_w: Windows,
    val_w: Windows,
    config: TrainConfig,
    out_dir: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    spec: WindowSpec | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `config.model` with early stopping on validation ADE (K=1); save the best weights
    to `out_dir/model.pt` with the config, window spec and `meta` (e.g. data_version).

    A model that cannot be trained (such as "cv") is saved as is and returned at once, so
    callers can treat every model alike.
    """
    start = time.perf_counter()
    device = loop.resolve_device(config.device)
    args = config.model_args | {"obs_len": train_w.obs.shape[1], "pred_len": _pred_len(train_w)}
    with loop.torch_threads(config.num_threads):
        generator = loop.seed_everything(config.seed)
        model = build_model(config.model, **args).to(device)
        history: list[dict[str, float]] = []
        best_epoch, calibration = 0, {}
        if model.trainable and config.epochs > 0:
            best_epoch = _fit(
                model, train_w, val_w, config, device, generator, history, on_epoch, progress
            )
            if len(val_w):
                val = [t.to(device) for t in loop.to_tensors(val_w)]
                calibration = model.calibrate(*val)
                if calibration:
                    log.info("calibrated on validation: %s", calibration)
        model.eval()
    seconds = time.perf_counter() - start
    spec_dict = asdict(spec) if spec is not None else _spec_from(train_w)
    checkpoint = save_checkpoint(
        Path(out_dir) / CHECKPOINT_NAME,
        model,
        {
            "train_config": asdict(config),
            "window_spec": spec_dict,
            "history": history,
            "best_epoch": best_epoch,
            "calibration": calibration,
            "train_seconds": seconds,
            "device": str(device),
            "n_train": len(train_w),
            "n_val": len(val_w),
        }
        | (meta or {}),
    )
    return TrainResult(model, history, best_epoch, seconds, calibration, str(device), checkpoint)


def _fit(
    model: TrajectoryModel,
    train_w: Windows,
    val_w: Windows,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    history: list[dict[str, float]],
    on_epoch: Callable[[dict[str, float]], None] | None,
    progress: bool,
) -> int:
    """The epoch loop; leaves the best-validation weights in `model`, returns the best epoch."""
    if config.max_train_windows is not None and len(train_w) > config.max_train_windows:
        rng = np.random.default_rng(config.seed)
        train_w = train_w.take(np.sort(rng.choice(len(train_w), config.max_train_windows, False)))
    tensors = loop.to_tensors(train_w)
    steps = config.epochs * -(-len(train_w) // config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: loop.lr_factor(s, steps, min(config.warmup_steps, steps // 10 + 1))
    )
    precision = loop.amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if precision == torch.float16 else None
    log.info(
        "training %s on %d windows (val %d), device %s, precision %s",
        model.name,
        len(train_w),
        len(val_w),
        device,
        precision or "float32",
    )

    best_ade, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    # disable=None: no bar when stderr is not a terminal (an Airflow task records stderr as
    # ERROR and a bar there arrives in one piece at the end); the per-epoch log lines remain
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"train {model.name}",
        disable=None if progress else True,
        unit="epoch",
    )
    for epoch in bar:
        t0 = time.perf_counter()
        batches = loop.batches(tensors, config.batch_size, generator)
        train_loss = loop.train_epoch(
            model, batches, optimizer, scheduler, device, precision, scaler, config.grad_clip
        )
        # K=1 is what the model returns for k=1 (for some models not the first of k samples)
        val = evaluate(model, val_w, k=config.val_k, device=device)
        val |= {key: evaluate(model, val_w, k=1, device=device)[key] for key in ("ade", "fde")}
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_ade": val["ade"],
            "val_fde": val["fde"],
            "val_min_ade": val["min_ade"],
            "val_min_fde": val["min_fde"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if val["ade"] < best_ade:
            best_ade, best_epoch, best_state = val["ade"], epoch, copy.deepcopy(model.state_dict())
        log.info(
            "epoch %d loss %.4f val ade %.3f fde %.3f min_ade %.3f min_fde %.3f (%.1fs)%s",
            epoch,
            train_loss,
            val["ade"],
            val["fde"],
            val["min_ade"],
            val["min_fde"],
            row["seconds"],
            " *" if best_epoch == epoch else "",
        )
        bar.set_postfix(
            loss=f"{train_loss:.3f}",
            val_ade=f"{val['ade']:.3f}",
            best=f"{best_ade:.3f}@{best_epoch}",
        )
        if on_epoch is not None:
            on_epoch(row)
        if epoch - best_epoch >= config.patience:
            log.info(
                "early stop at epoch %d: no better val ade for %d epochs", epoch, config.patience
            )
            break
    bar.close()
    model.load_state_dict(best_state)
    return best_epoch


def _pred_len(windows: Windows) -> int:
    if windows.fut is None:
        raise DataError("training windows need a future")
    return windows.fut.shape[1]


def _spec_from(windows: Windows) -> dict[str, int]:
    """What the arrays say about the window spec when the caller did not pass one."""
    return {
        "obs_len": windows.obs.shape[1],
        "pred_len": _pred_len(windows),
        "max_neighbours": windows.nbr.shape[1],
    }
