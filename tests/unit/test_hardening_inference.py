"""A non-finite model output is an error for that agent, never a number sent or written."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import RequestError
from serving.inference import NonFiniteOutputError, check_finite_outputs, finite_outputs
from trajectory.exceptions import DataError


def test_the_agents_with_a_non_finite_prediction_are_named() -> None:
    traj = np.zeros((3, 2, 4, 2), np.float32)  # (A, K, T, 2)
    weights = np.full((3, 2), 0.5, np.float32)  # (A, K)
    check_finite_outputs(np.array([7, 8, 9]), traj, weights)  # all finite: no error
    traj[1, 0, 2, 1] = np.nan
    weights[2, 1] = np.inf
    assert finite_outputs(traj, weights).tolist() == [True, False, False]
    with pytest.raises(NonFiniteOutputError) as err:
        check_finite_outputs(np.array([7, 8, 9]), traj, weights)
    assert isinstance(err.value, RequestError) and isinstance(err.value, DataError)  # a 422
    assert err.value.field == "agents.1" and err.value.positions == [1, 2]
    assert err.value.agent_ids == [8, 9] and "agent_id 8, 9" in str(err.value)
