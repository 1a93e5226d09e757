"""Tracking against a real `mlflow server`: log, register, promote, load, serve-shaped predict.

The data are agents walking at constant velocity, so the `cv` model is exact and a briefly
trained mixture is worse: that fixes which challenger must win.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.pyfunc import scoring_server
from mlflow.tracking import MlflowClient
from walking import SPEC, walking_windows

from trajectory import tracking
from trajectory.config import Settings
from trajectory.data.windows import Windows
from trajectory.exceptions import TrackingError
from trajectory.models import predict
from trajectory.tracking.client import ENV_DEFAULTS
from trajectory.tracking.pyfunc import model_input, serving_payload
from trajectory.training import TrainConfig, TrainResult, evaluate, train

pytestmark = pytest.mark.integration

@dataclass
class Logged:
    settings: Settings
    val: Windows
    mixture: TrainResult
    cv: TrainResult
    mixture_run: str
    cv_run: str


@pytest.fixture(scope="module")
def settings(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at the test server, with names of their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for name, value in ENV_DEFAULTS.items():
            mp.setenv(name, value)  # undone afterwards, unlike the defaults `connect` sets
        tag = uuid.uuid4().hex[:8]
        yield Settings(
            work_dir=tmp_path_factory.mktemp("work"), mlflow_tracking_uri=mlflow_server,
            experiment_name=f"it-{tag}", model_name=f"it-model-{tag}", device="cpu",
        )


@pytest.fixture(scope="module")
def logged(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """A 2-epoch mixture run and a cv run, logged once for the module."""
    out = tmp_path_factory.mktemp("train")
    train_w, val, test = walking_windows(64, 0), walking_windows(24, 1), walking_windows(24, 2)
    configs = {
        "mixture": TrainConfig(model="mixture", epochs=2, batch_size=32, device="cpu",
                               model_args={"hidden": 16, "heads": 2, "modes": 20}),
        "cv": TrainConfig(model="cv", device="cpu"),
    }
    results, runs = {}, {}
    for name, config in configs.items():
        result = train(train_w, val, config, out / name, progress=False, spec=SPEC,
                       meta={"data_version": "walk-v1"})
        runs[name] = tracking.log_training(
            settings, result=result, train_config=config, spec=SPEC, data_version="walk-v1",
            val_metrics=evaluate(result.model, val, k=3),
            test_metrics=evaluate(result.model, test, k=3),
            sample_windows=val, extra_params={"purpose": "integration test"},
        )
        results[name] = result
    return Logged(settings, val, results["mixture"], results["cv"], runs["mixture"], runs["cv"])


def test_run_holds_params_metrics_and_artifacts(logged: Logged) -> None:
    client = MlflowClient(logged.settings.tracking_uri())
    run = client.get_run(logged.mixture_run)
    params, metrics = run.data.params, run.data.metrics
    assert params["data_version"] == "walk-v1" and run.data.tags["data_version"] == "walk-v1"
    assert params["config.epochs"] == "2" and params["spec.obs_len"] == "8"
    assert params["model.name"] == "mixture" and params["model.args.modes"] == "20"
    assert params["code_version"] and params["purpose"] == "integration test"
    for key in ("val_ade", "val_fde", "val_min_ade", "val_min_fde", "test_ade", "test_min_fde",
                "train_seconds", "train_loss", "epoch_val_ade"):
        assert key in metrics, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert paths == {"plots/history.png", "plots/samples.png"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [
        "checkpoint/model.pt"
    ]
    config = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config/run.json")
    assert config["window_spec"] == asdict(SPEC) and config["train_config"]["epochs"] == 2

    cv_run = client.get_run(logged.cv_run)
    assert "train_loss" not in cv_run.data.metrics and cv_run.data.metrics["val_ade"] < 1e-4


def test_register_promote_and_record_decisions(logged: Logged) -> None:
    settings, client = logged.settings, MlflowClient(logged.settings.tracking_uri())
    name = settings.model_name
    with pytest.raises(TrackingError, match="challenger"):
        tracking.promote(settings, logged.val)
    assert tracking.resolve_alias(settings, "champion") is None

    first = tracking.register(settings, logged.mixture_run)
    assert tracking.resolve_alias(settings, "challenger") == first
    tags = client.get_model_version(name, str(first)).tags
    assert tags["data_version"] == "walk-v1" and float(tags["val_ade"]) > 0
    decision = tracking.promote(settings, logged.val)
    assert decision.promoted and decision.champion_version is None
    assert tracking.resolve_alias(settings, "champion") == first

    second = tracking.register(settings, logged.cv_run)
    decision = tracking.promote(settings, logged.val)
    assert decision.promoted and (decision.challenger_version, decision.champion_version) == (
        second, first)
    assert decision.challenger_val_ade < decision.champion_val_ade  # type: ignore[operator]
    assert tracking.resolve_alias(settings, "champion") == second

    # the worse model again as challenger: the same version, not promoted, and why is kept
    assert tracking.register(settings, logged.mixture_run) == first
    decision = tracking.promote(settings, logged.val, min_improvement=0.0)
    assert not decision.promoted and "not better" in decision.reason
    assert tracking.resolve_alias(settings, "champion") == second
    tags = client.get_model_version(name, str(first)).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.reason"] == decision.reason
    recorded = mlflow.artifacts.load_dict(f"runs:/{logged.mixture_run}/promotion/decision.json")
    assert recorded["promoted"] is False and recorded["champion_version"] == second
    assert recorded["val_fingerprint"] == decision.val_fingerprint


def test_load_model_by_alias_version_and_run(logged: Logged) -> None:
    settings = logged.settings
    version = tracking.register(settings, logged.mixture_run, alias="loadtest")
    expected, _ = predict(logged.mixture.model, logged.val.obs, logged.val.nbr, k=3)
    for uri in (f"models:/{settings.model_name}@loadtest",
                f"models:/{settings.model_name}/{version}", f"runs:/{logged.mixture_run}"):
        loaded = tracking.load_model(uri, settings)
        assert loaded.run_id == logged.mixture_run and loaded.spec == SPEC
        assert loaded.version == (None if uri.startswith("runs:") else version)
        assert loaded.meta["data_version"] == "walk-v1"
        got, _ = predict(loaded.model, logged.val.obs, logged.val.nbr, k=3)
        np.testing.assert_array_equal(got, expected)


def test_pyfunc_predicts_in_process_and_from_json(logged: Logged) -> None:
    model = mlflow.pyfunc.load_model(f"runs:/{logged.mixture_run}/model")
    expected, weights = predict(logged.mixture.model, logged.val.obs, logged.val.nbr, k=2)
    out = model.predict(model_input(logged.val.obs, logged.val.nbr), params={"k": 2})
    np.testing.assert_allclose(out["traj"], expected, rtol=1e-5, atol=1e-5)
    assert out["weights"].shape == weights.shape

    # the body `mlflow models serve` receives: strict JSON, missing neighbours as 1e9
    body = json.dumps(serving_payload(logged.val.obs, logged.val.nbr, k=2), allow_nan=False)
    served = json.loads(invoke(model, body))["predictions"]
    np.testing.assert_allclose(np.asarray(served["traj"]), expected, rtol=1e-5, atol=1e-5)
    assert np.asarray(served["weights"]).shape == (len(logged.val), 2)

    # the logged serving example is strict JSON too, and the server accepts it
    path = mlflow.artifacts.download_artifacts(
        f"runs:/{logged.mixture_run}/model/serving_input_example.json"
    )
    example = Path(path).read_text()
    json.loads(example, parse_constant=reject_constant)
    assert np.asarray(json.loads(invoke(model, example))["predictions"]["traj"]).shape[1:] == (
        1, SPEC.pred_len, 2)


def invoke(model: mlflow.pyfunc.PyFuncModel, body: str) -> str:
    """What `mlflow models serve` does with a POST /invocations body."""
    response = scoring_server.invocations(body, "application/json", model,
                                          model.metadata.get_input_schema())
    assert response.status == 200, response.response
    return response.response


def reject_constant(name: str) -> float:
    raise AssertionError(f"{name} is not valid JSON")


def test_unreachable_server_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unused_port: int
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ENV_DEFAULTS:  # let `configure` apply its defaults, and undo them afterwards
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    uri = f"http://127.0.0.1:{unused_port}"
    settings = Settings(work_dir=tmp_path, mlflow_tracking_uri=uri)
    start = time.monotonic()
    with pytest.raises(TrackingError, match=uri):
        tracking.configure(settings)
    assert time.monotonic() - start < 15
