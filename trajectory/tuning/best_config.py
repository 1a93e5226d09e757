"""Writing the best trial into the training configuration: atomically, with its provenance.

The file is trajectory/training/config.json unless told otherwise: the one configuration that
`trajectory run`, the train DAG and the ETH/UCY benchmark read, under version control, so the
change shows in `git diff` beside the `provenance` entry that says which search made it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trajectory.exceptions import ConfigError
from trajectory.files import write_json_atomic
from trajectory.training.train import TrainConfig

PROVENANCE = "provenance"


def write_best_config(
    path: Path, updates: Mapping[str, Any], provenance: Mapping[str, Any]
) -> dict[str, Any]:
    """Set the keys in `updates` (`space.config_updates`) in the JSON object at `path`, keep
    every other key in its place, replace the `provenance` entry; write to a temporary file
    beside it, then rename over it. -> the new content."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the training configuration: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the training configuration is not a JSON object")
    content = values | dict(updates) | {PROVENANCE: dict(provenance)}
    _check_loadable(content)
    write_json_atomic(path, content)
    return content


def _check_loadable(content: Mapping[str, Any]) -> None:
    """What is written must load as a TrainConfig (TrainConfig.load ignores `provenance`)."""
    fields = set(TrainConfig.__dataclass_fields__)
    TrainConfig(**{k: v for k, v in content.items() if k in fields})  # raises ConfigError

