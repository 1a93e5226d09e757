"""Run conf checks, and the settings the Asset chain trains with.

Airflow validates the params a DAG declares but keeps any other conf key without a word, so a
typo (`{"epoch": 1}`) would train with the defaults; `checked_params` refuses it instead.

A run of `trajectory_train` started by an asset event has no form and no conf: it takes the
Airflow Variable `trajectory_train_conf` (a JSON object of the DAG's params, e.g.
`{"model": "cv", "epochs": 5}`), checked like a run conf, over the DAG's defaults.
"""

from __future__ import annotations

import copy
import json
from typing import Any

TRAIN_CONF_VARIABLE = "trajectory_train_conf"


def checked_params(context: Any) -> dict[str, Any]:
    """The run's params; a ConfigError (no retry) naming any conf key the DAG does not declare."""
    from trajectory.exceptions import ConfigError

    declared = set(context["dag"].params) | set(context["task"].params)
    conf = context["dag_run"].conf or {}
    unknown = sorted(set(conf) - declared)
    if unknown:
        raise ConfigError(
            f"unknown conf key {unknown[0]!r} for {context['dag'].dag_id}"
            + (f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else "")
            + f"; the params are {', '.join(sorted(declared))}")
    return dict(context["params"])


def chain_params(declared: Any, raw: str | None) -> dict[str, Any]:
    """The DAG's defaults (`declared`, its ParamsDict) overridden by the Variable's JSON `raw`
    (None: no Variable); every key must be a param and every value valid for it."""
    from airflow.sdk.exceptions import ParamValidationError

    from trajectory.exceptions import ConfigError

    where = f"Airflow Variable {TRAIN_CONF_VARIABLE}"
    try:
        overrides = {} if raw is None else json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where} is not JSON: {err}") from err
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must be a JSON object of params, not {str(raw)[:80]!r}")
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; the params are "
                          f"{', '.join(sorted(declared))}")
    params = copy.deepcopy(declared)
    try:
        for key, value in overrides.items():
            params[key] = value
    except ParamValidationError as err:
        raise ConfigError(f"{where}: {err}") from err
    return {name: params[name] for name in params}


def chain_variable() -> str | None:
    """The raw `trajectory_train_conf` Variable, None when it is not set."""
    from airflow.sdk import Variable

    value = Variable.get(TRAIN_CONF_VARIABLE, default=None)
    return None if value is None else str(value)
