"""The search space, declared once: which training settings a trial draws, and from where.

A name is a `TrainConfig` field (`lr`) or `model_args.<arg>` (`model_args.hidden`). A model
argument is searched only if the base configuration already sets it (the `model_args` of
trajectory/training/config.json), so the space never invents an argument a model lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from trajectory.exceptions import ConfigError
from trajectory.training.train import TrainConfig

if TYPE_CHECKING:
    import optuna

MODEL_ARGS = "model_args."


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float range (`log` for scale-free ones) or a list of choices."""

    name: str
    kind: Literal["float", "log", "choice"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {list(self.choices)}"
        scale = " (log)" if self.kind == "log" else ""
        return f"{self.name} in [{self.low:g}, {self.high:g}]{scale}"


# The whole space. Keep it small: every dimension multiplies the trials a search needs.
SPACE: tuple[Dimension, ...] = (
    Dimension("lr", "log", 3e-4, 1e-2),
    Dimension("weight_decay", "log", 1e-6, 1e-2),
    Dimension("batch_size", "choice", choices=(64, 128, 256, 512)),
    Dimension("model_args.hidden", "choice", choices=(64, 128, 256)),
    Dimension("model_args.dropout", "float", 0.0, 0.3),
    # mixture: weight of the central track's loss, and the softness of the mode-weight targets
    Dimension("model_args.central_weight", "float", 0.25, 2.0),
    Dimension("model_args.tau", "log", 0.1, 2.0),
)


def space_for(config: TrainConfig, space: Sequence[Dimension] = SPACE) -> list[Dimension]:
    """The dimensions that apply to `config`: every field, and the model args it sets."""
    fields = set(TrainConfig.__dataclass_fields__)
    out = []
    for dim in space:
        if dim.name.startswith(MODEL_ARGS):
            if dim.name.removeprefix(MODEL_ARGS) in config.model_args:
                out.append(dim)
        elif dim.name in fields:
            out.append(dim)
        else:
            raise ConfigError(f"search dimension {dim.name!r} is not a TrainConfig field")
    return out


def suggest(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """One draw of every dimension: {name: value}."""
    return {dim.name: dim.suggest(trial) for dim in space}


def apply(config: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """`config` with the drawn values set (model args merged into its `model_args`)."""
    model_args = dict(config.model_args)
    fields: dict[str, Any] = {}
    for name, value in params.items():
        if name.startswith(MODEL_ARGS):
            model_args[name.removeprefix(MODEL_ARGS)] = value
        else:
            fields[name] = value
    return replace(config, model_args=model_args, **fields)


def config_updates(config: TrainConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level keys of a configuration file that a draw sets: the searched fields, and
    the model with its whole `model_args` (those not searched keep the base's values)."""
    tuned = apply(config, params)
    fields = {k: v for k, v in params.items() if not k.startswith(MODEL_ARGS)}
    return fields | {"model": tuned.model, "model_args": tuned.model_args}
