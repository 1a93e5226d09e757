"""Displacement metrics on hand-computed cases."""

import numpy as np
import pytest

from trajectory import metrics


def test_ade_fde_on_a_constant_offset() -> None:
    gt = np.zeros((2, 4, 2))
    pred = gt + np.array([3.0, 4.0])  # 5 m off everywhere
    assert metrics.ade(pred, gt).tolist() == [5.0, 5.0]
    assert metrics.fde(pred, gt).tolist() == [5.0, 5.0]


def test_best_of_k_minimises_ade_and_fde_independently() -> None:
    gt = np.zeros((1, 2, 2))
    a = np.array([[0.0, 0.0], [4.0, 0.0]])  # ade 2, fde 4
    b = np.array([[5.0, 0.0], [1.0, 0.0]])  # ade 3, fde 1
    min_ade, min_fde = metrics.best_of_k(np.stack([a, b])[None], gt)
    assert min_ade.item() == pytest.approx(2.0) and min_fde.item() == pytest.approx(1.0)


def test_summarize_reports_best_of_k_only_for_many_samples() -> None:
    gt = np.zeros((3, 5, 2))
    assert set(metrics.summarize(gt[:, None], gt)) == {"ade", "fde"}
    assert metrics.summarize(np.repeat(gt[:, None], 2, 1), gt)["min_ade"] == 0.0
    assert metrics.miss_rate(gt[:, None] + 3.0, gt) == 1.0
