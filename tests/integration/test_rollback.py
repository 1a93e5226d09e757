"""`trajectory rollback` against a real `mlflow server`: the champion alias moves back, recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner
from walking import walking_windows

from trajectory import tracking
from trajectory.cli import app
from trajectory.config import Settings
from trajectory.data.windows import WindowSpec
from trajectory.tracking.client import ENV_DEFAULTS
from trajectory.training import TrainConfig, evaluate, train

pytestmark = pytest.mark.integration

SPEC = WindowSpec(obs_len=8, pred_len=12, max_neighbours=1)


@pytest.fixture(scope="module")
def two_champions(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """v1 (a 1-epoch mixture) promoted, then v2 (cv) promoted over it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        for name, value in ENV_DEFAULTS.items():
            mp.setenv(name, value)
        tag = uuid.uuid4().hex[:8]
        settings = Settings(work_dir=tmp_path_factory.mktemp("rb"), experiment_name=f"rb-{tag}",
                            model_name=f"rb-model-{tag}", device="cpu")
        mp.setenv("TRAJ_MODEL_NAME", settings.model_name)
        train_w, val = walking_windows(64, 0, SPEC), walking_windows(24, 1, SPEC)
        for model, args in (("mixture", {"hidden": 16, "heads": 2, "modes": 2}), ("cv", {})):
            config = TrainConfig(model=model, epochs=1, batch_size=32, device="cpu",
                                 model_args=args)
            result = train(train_w, val, config, settings.work_dir / model, progress=False,
                           spec=SPEC)
            run_id = tracking.log_training(settings, result=result, train_config=config,
                                           spec=SPEC, data_version="s-v1",
                                           val_metrics=evaluate(result.model, val, k=1))
            tracking.register(settings, run_id)
            assert tracking.promote(settings, val).promoted
        assert tracking.resolve_alias(settings, "champion") == 2
        yield settings


def rollback(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["rollback", *args])
    return result.exit_code, result.stdout, result.stderr


def test_rollback_goes_to_the_replaced_version_and_back(two_champions: Settings) -> None:
    settings = two_champions
    client = MlflowClient(settings.tracking_uri())
    code, out, err = rollback("--reason", "live ADE regression")
    assert code == 0, err
    assert out.strip() == "champion: v2 -> v1"
    assert tracking.resolve_alias(settings, "champion") == 1
    assert tracking.resolve_alias(settings, "challenger") == 2  # untouched
    tags = client.get_model_version(settings.model_name, "1").tags
    assert tags["rollback.from_version"] == "2" and tags["rollback.reason"] == "live ADE regression"

    # nothing records what v1 replaced: a clear error, and the alias stays
    code, _, err = rollback()
    assert code == 5 and "pass --to-version" in err and len(err.strip().splitlines()) == 1
    assert tracking.resolve_alias(settings, "champion") == 1

    code, out, err = rollback("--to-version", "2", "--model", settings.model_name)
    assert code == 0, err
    assert out.strip() == "champion: v1 -> v2"
    assert tracking.resolve_alias(settings, "champion") == 2


@pytest.mark.parametrize(("version", "words"), [("9", "no version 9"), ("2", "already")])
def test_rollback_refuses_unknown_or_current_versions(
    two_champions: Settings, version: str, words: str
) -> None:
    code, _, err = rollback("--to-version", version)
    assert code == 4 and words in err and "Traceback" not in err
    assert tracking.resolve_alias(two_champions, "champion") == 2


def test_rollback_without_a_champion_says_so(two_champions: Settings) -> None:
    code, _, err = rollback("--model", "no-such-model-anywhere")
    assert code == 5 and "no 'champion' alias" in err
