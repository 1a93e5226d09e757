"""`run_tuning` against a real `mlflow server` and an Optuna SQLite storage, on a tiny
synthetic leave-one-scene-out fold whose test/ folder is a trap: reading it would fail."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from trajectory.config import Settings
from trajectory.exceptions import ConfigError
from trajectory.tracking.client import ENV_DEFAULTS
from trajectory.training.train import CONFIG_PATH, TrainConfig
from trajectory.tuning import TuneOptions, run_tuning

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {"epochs": 2, "max_train_windows": 200}


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report, lets the others finish."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


@pytest.fixture(scope="module")
def fold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ from two simulated scenes; test/ holds an empty file, which
    read_tracks refuses, so a search that looked at it would fail."""
    from trajectory.data.simulate import simulate_crowd

    root = tmp_path_factory.mktemp("tune_data")
    paths = simulate_crowd(root / "raw", n_scenes=2, agents_per_scene=6, n_frames=160, seed=3,
                           fast=True)
    for split, path in zip(("train", "val"), paths, strict=True):
        (root / "fold" / split).mkdir(parents=True)
        shutil.copy(path, root / "fold" / split / path.name)
    (root / "fold" / "test").mkdir()
    (root / "fold" / "test" / "trap.txt").write_text("")
    return root / "fold"


@pytest.fixture
def settings(mlflow_server: str, tmp_path: Path) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for name, value in ENV_DEFAULTS.items():
            mp.setenv(name, value)
        yield Settings(work_dir=tmp_path / "work", mlflow_tracking_uri=mlflow_server,
                       experiment_name=f"it-tune-{uuid.uuid4().hex[:8]}", device="cpu",
                       optuna_storage=None)


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    shutil.copyfile(CONFIG_PATH, path)
    return path


def children(client: MlflowClient, experiment_id: str, parent: str) -> list:
    return client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


def test_trials_are_nested_runs_and_the_best_is_written_with_provenance(
    settings: Settings, fold: Path, config_copy: Path
) -> None:
    before = json.loads(config_copy.read_text())
    result = run_tuning(settings, TuneOptions(trials=3, workers=1, raw_dir=fold,
                                              config_path=config_copy, write_to=config_copy,
                                              **TINY), pruner=PruneTrialOne())

    assert result.trials == {"total": 3, "complete": 2, "pruned": 1, "failed": 0}
    client = MlflowClient(tracking_uri=settings.tracking_uri())
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert client.get_experiment(parent.info.experiment_id).name == result.experiment_name
    assert result.experiment_name == f"{settings.experiment_name}-tuning"
    assert parent.data.params["study"] == result.study_name
    assert parent.data.params["storage"].startswith("sqlite:///")
    assert parent.data.params["data.splits_used"] == '["train", "val"]'
    assert parent.data.metrics["trials_total"] == 3 and parent.data.metrics["trials_pruned"] == 1
    assert parent.data.metrics["best_val_ade"] == pytest.approx(result.best_value)
    assert float(parent.data.params["best.lr"]) == pytest.approx(result.best_params["lr"])
    artifacts = {f.path for f in client.list_artifacts(result.parent_run_id, "tuning")}
    assert {"tuning/config.json", "tuning/provenance.json", "tuning/search_space.json"} <= artifacts

    kids = children(client, parent.info.experiment_id, result.parent_run_id)
    assert len(kids) == 3
    by_state: dict[str, list] = {}
    for run in kids:
        assert run.info.status == "FINISHED"
        assert "lr" in run.data.params and run.data.tags["optuna.study"] == result.study_name
        by_state.setdefault(run.data.tags["optuna.state"], []).append(run)
        history = client.get_metric_history(run.info.run_id, "val_ade")
        steps = sorted(m.step for m in history)
        assert steps == ([1] if run.data.tags["optuna.state"] == "PRUNED" else [1, 2])
    assert {k: len(v) for k, v in by_state.items()} == {"COMPLETE": 2, "PRUNED": 1}
    assert by_state["PRUNED"][0].data.metrics["pruned"] == 1.0

    after = json.loads(config_copy.read_text())
    provenance = after.pop("provenance")
    assert provenance["study"] == result.study_name and provenance["trials"] == result.trials
    assert provenance["best_val_ade"] == pytest.approx(result.best_value)
    assert provenance["data"]["splits_used"] == ["train", "val"]
    assert provenance["data"]["kind"] == "raw" and provenance["mlflow_run_id"] == parent.info.run_id
    assert provenance["epochs_per_trial"] == 2  # the search budget, not written as `epochs`
    assert after["epochs"] == before["epochs"] and after["patience"] == before["patience"]
    assert after["lr"] == result.best_params["lr"]
    assert after["model_args"]["modes"] == before["model_args"]["modes"]
    assert TrainConfig.load(config_copy).batch_size == result.best_params["batch_size"]

    study = optuna.load_study(study_name=result.study_name,
                              storage=f"sqlite:///{settings.work_dir.resolve() / 'optuna.db'}")
    assert len(study.trials) == 3
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {r.info.run_id for r in kids}


def test_two_worker_processes_share_one_study_which_a_later_search_continues(
    settings: Settings, fold: Path, config_copy: Path
) -> None:
    options = {"raw_dir": fold, "config_path": config_copy, "write_to": None, "epochs": 1,
               "max_train_windows": 100, "study": "shared-study"}
    first = run_tuning(settings, TuneOptions(trials=2, workers=2, **options))
    assert first.trials["total"] >= 2 and first.written is None
    client = MlflowClient(tracking_uri=settings.tracking_uri())
    experiment = client.get_experiment_by_name(first.experiment_name).experiment_id
    assert len(children(client, experiment, first.parent_run_id)) == first.trials["total"]

    second = run_tuning(settings, TuneOptions(trials=1, workers=1, **options))
    assert second.trials["total"] == first.trials["total"] + 1
    assert len(children(client, experiment, second.parent_run_id)) == 1
    assert client.get_run(second.parent_run_id).data.params["trials_before"] == str(
        first.trials["total"])


def test_a_search_without_a_complete_trial_fails_and_leaves_the_config(
    settings: Settings, fold: Path, config_copy: Path
) -> None:
    before = config_copy.read_bytes()
    always = optuna.pruners.ThresholdPruner(upper=0.0)  # every ADE is above 0: prune at once
    with pytest.raises(ConfigError, match="no trial"):
        run_tuning(settings, TuneOptions(trials=1, workers=1, raw_dir=fold, config_path=config_copy,
                                         write_to=config_copy, **TINY), pruner=always)
    assert config_copy.read_bytes() == before
    client = MlflowClient(tracking_uri=settings.tracking_uri())
    experiment = client.get_experiment_by_name(f"{settings.experiment_name}-tuning")
    parents = client.search_runs([experiment.experiment_id],
                                 "attributes.status = 'FAILED'")
    assert len(parents) == 1 and "no trial" in parents[0].data.tags["error"]
