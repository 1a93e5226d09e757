"""The pieces of a training run: device and precision choice, seeding, batches, one epoch."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np
import torch

from trajectory.data.windows import Windows
from trajectory.exceptions import ConfigError, DataError, ModelError
from trajectory.models.base import TrajectoryModel


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; "cuda" without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on GPU only: bf16 where supported, else fp16 (with a GradScaler)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a generator for the data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use n intra-op threads inside the block (process-wide in torch), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))


def to_tensors(windows: Windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host tensors (obs, nbr, fut) of a Windows object; batches move to the device one by one."""
    if windows.fut is None:
        raise DataError("training needs windows with a future")
    if len(windows) == 0:
        raise DataError("no windows to train on")
    return (
        torch.as_tensor(windows.obs, dtype=torch.float32),  # (N, T_obs, 2)
        torch.as_tensor(windows.nbr, dtype=torch.float32),  # (N, M, T_obs, 2)
        torch.as_tensor(windows.fut, dtype=torch.float32),  # (N, T_pred, 2)
    )


def batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Shuffled mini-batches (the last one may be smaller)."""
    order = torch.randperm(len(tensors[0]), generator=generator)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield tuple(t[idx] for t in tensors)


def train_epoch(
    model: TrajectoryModel,
    data: Iterator[tuple[torch.Tensor, ...]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    precision: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
) -> float:
    """One pass over `data`; returns the mean training loss per window."""
    model.train()
    total, count = 0.0, 0
    for obs, nbr, fut in data:
        obs, nbr, fut = (t.to(device, non_blocking=True) for t in (obs, nbr, fut))
        with autocast(device, precision):
            loss = model.loss(obs, nbr, fut)
        if not torch.isfinite(loss):
            raise ModelError(f"training diverged: the loss is {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        total += loss.item() * len(obs)
        count += len(obs)
    return total / max(count, 1)
