"""The search's pure parts: the space, the config rewrite, storage URLs, options, train/val only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest

from trajectory.config import Settings
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ConfigError, DataError
from trajectory.training.train import CONFIG_PATH, TrainConfig
from trajectory.tuning import TuneOptions
from trajectory.tuning.best_config import PROVENANCE, write_best_config
from trajectory.tuning.data import SearchData, check_no_test, load_search_data
from trajectory.tuning.search import base_config, resolve_workers
from trajectory.tuning.space import SPACE, Dimension, apply, config_updates, space_for, suggest
from trajectory.tuning.study import redact, storage_url

PROVENANCE_ENTRY = {"study": "s1", "trials": {"total": 3, "complete": 2, "pruned": 1}}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A copy of the project's training configuration."""
    path = tmp_path / "config.json"
    shutil.copyfile(CONFIG_PATH, path)
    return path


def test_space_uses_fields_and_only_the_model_args_the_configuration_sets() -> None:
    configured = TrainConfig.load()
    names = [d.name for d in space_for(configured)]
    fields = set(TrainConfig.__dataclass_fields__)
    assert {"lr", "weight_decay", "batch_size", "model_args.hidden", "model_args.dropout"} <= set(
        names
    )
    for name in names:
        arg = name.removeprefix("model_args.")
        assert name in fields or arg in configured.model_args, name
    small = TrainConfig(model="mixture", model_args={"hidden": 32})
    assert [d.name for d in space_for(small) if d.name.startswith("model_args.")] == [
        "model_args.hidden"
    ]
    with pytest.raises(ConfigError, match="not a TrainConfig field"):
        space_for(small, [Dimension("learning_rate", "log", 1e-4, 1e-2)])


def test_every_dimension_is_declared_once_with_a_valid_range() -> None:
    assert len({d.name for d in SPACE}) == len(SPACE)
    for dim in SPACE:
        if dim.kind == "choice":
            assert dim.choices
        else:
            assert dim.low < dim.high and (dim.kind != "log" or dim.low > 0), dim.name


def test_a_draw_sets_fields_and_model_args_and_keeps_the_rest() -> None:
    base = TrainConfig.load()
    space = space_for(base)
    drawn = {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 64, "model_args.hidden": 64,
             "model_args.dropout": 0.1, "model_args.central_weight": 0.5, "model_args.tau": 1.0}
    params = suggest(optuna.trial.FixedTrial(drawn), space)
    assert params == {d.name: drawn[d.name] for d in space}
    config = apply(base, params)
    assert config.lr == 1e-3 and config.batch_size == 64 and config.model_args["hidden"] == 64
    assert config.model_args["modes"] == base.model_args["modes"]  # not searched: kept
    assert config.epochs == base.epochs and base.model_args["hidden"] != 64  # base untouched
    updates = config_updates(base, params)
    assert updates["model"] == base.model and updates["model_args"] == config.model_args
    assert "model_args.hidden" not in updates and updates["lr"] == 1e-3


def test_best_config_keeps_untouched_keys_in_place_and_adds_provenance(config_file: Path) -> None:
    before = json.loads(config_file.read_text())
    base = TrainConfig.load(config_file)
    updates = config_updates(base, {"lr": 5e-4, "model_args.hidden": 64})
    written = write_best_config(config_file, updates, PROVENANCE_ENTRY)
    after = json.loads(config_file.read_text())
    assert after == written
    assert list(after)[: len(before)] == list(before)  # same keys, same order
    assert after["lr"] == 5e-4 and after["model_args"]["hidden"] == 64
    for key in ("epochs", "patience", "warmup_steps", "val_k", "grad_clip"):
        assert after[key] == before[key]
    assert after["model_args"] | {"hidden": 64} == before["model_args"] | {"hidden": 64}
    assert after[PROVENANCE] == PROVENANCE_ENTRY
    assert TrainConfig.load(config_file).lr == 5e-4  # provenance is a note, not a field
    assert sorted(p.name for p in config_file.parent.iterdir()) == ["config.json"]


def test_best_config_is_written_atomically(config_file: Path, monkeypatch) -> None:
    before = config_file.read_bytes()

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_best_config(config_file, {"lr": 1e-3}, PROVENANCE_ENTRY)
    assert config_file.read_bytes() == before
    assert sorted(p.name for p in config_file.parent.iterdir()) == ["config.json"]  # no temp


def test_best_config_refuses_what_would_not_load(config_file: Path) -> None:
    before = config_file.read_bytes()
    with pytest.raises(ConfigError):
        write_best_config(config_file, {"lr": -1.0}, PROVENANCE_ENTRY)
    assert config_file.read_bytes() == before
    with pytest.raises(ConfigError, match="cannot read"):
        write_best_config(config_file.with_name("missing.json"), {}, PROVENANCE_ENTRY)


def test_storage_defaults_to_sqlite_in_the_work_dir_and_hides_passwords(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path, optuna_storage=None)
    assert storage_url(settings) == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"
    url = "postgresql+psycopg2://serving:s3cret@postgres:5432/serving"
    assert storage_url(Settings(work_dir=tmp_path, optuna_storage=url)) == url
    assert "s3cret" not in redact(url) and redact(url).endswith("@postgres:5432/serving")


def test_options_are_checked_and_workers_never_exceed_trials(tmp_path: Path) -> None:
    for bad in ({"trials": 0}, {"trials": 2, "timeout": 0}, {"trials": 2, "workers": -1},
                {"trials": 2, "epochs": 0}):
        with pytest.raises(ConfigError):
            TuneOptions(**bad)  # type: ignore[arg-type]
    settings = Settings(work_dir=tmp_path, device="cpu")
    assert resolve_workers(TuneOptions(trials=2, workers=8), settings) == 2
    assert 1 <= resolve_workers(TuneOptions(trials=3), settings) <= 3


def test_base_config_takes_the_search_budget_and_one_thread_per_worker(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path, device="cpu", seed=7)
    options = TuneOptions(trials=2, epochs=3, max_train_windows=100)
    config = base_config(options, settings, workers=2)
    assert (config.epochs, config.max_train_windows, config.num_threads) == (3, 100, 1)
    assert (config.device, config.seed) == ("cpu", 7)
    assert config.model_args == TrainConfig.load().model_args


def _windows(n: int, split: str | None = None) -> Windows:
    w = Windows(obs=np.zeros((n, 8, 2), np.float32), nbr=np.zeros((n, 1, 8, 2), np.float32),
                scene=np.full(n, "s", object), agent_id=np.arange(n),
                start_frame=np.zeros(n, np.int64), fut=np.zeros((n, 12, 2), np.float32))
    if split is not None:
        w.extra["split"] = np.full(n, split, object)
    return w


def test_windows_of_another_split_or_a_test_file_are_refused() -> None:
    ok = SearchData(_windows(3, "train"), _windows(2, "val"), "src", "windows", "v1")
    check_no_test(ok)
    leaked = _windows(3, "train")
    leaked.extra["split"][0] = "test"
    with pytest.raises(DataError, match="other splits"):
        check_no_test(SearchData(leaked, _windows(2, "val"), "src", "windows", "v1"))
    with pytest.raises(DataError, match="not a train or val file"):
        check_no_test(SearchData(_windows(3), _windows(2), "src", "raw", "v1",
                                 files=["train/a.txt", "test/b.txt"]))


def test_a_fold_without_val_or_two_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no val/ folder"):
        load_search_data(WindowSpec(), raw_dir=tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        load_search_data(WindowSpec(), raw_dir=tmp_path, windows_dir=tmp_path)
    with pytest.raises(ConfigError, match="exactly one"):
        load_search_data(WindowSpec())


def _etl_output(root: Path) -> Path:
    """A one-scene ETL output split by time into train/val/test (pyarrow only, no Dask)."""
    from trajectory.data.dataset import write_manifest, write_scene_windows
    from trajectory.data.io import read_tracks
    from trajectory.data.simulate import simulate_crowd

    (path,) = simulate_crowd(root / "raw", n_scenes=1, agents_per_scene=6, n_frames=300, seed=1,
                             fast=True)
    out = root / "windows"
    counts = write_scene_windows(read_tracks(path).tracks, out, split=None, part="0",
                                 spec=WindowSpec(), frame_seconds=0.4)
    assert set(counts) == {"train", "val", "test"}
    write_manifest(out, files=[], rows={}, windows={"sim_000": counts}, spec=WindowSpec(),
                   settings={})
    return out


def test_etl_windows_give_the_train_and_val_rows_only(tmp_path: Path) -> None:
    windows = _etl_output(tmp_path)
    data = load_search_data(WindowSpec(), windows_dir=windows)
    manifest = json.loads((windows / "manifest.json").read_text())
    assert set(data.train.extra["split"]) == {"train"} and set(data.val.extra["split"]) == {"val"}
    assert len(data.train) == manifest["windows"]["sim_000"]["train"]
    assert len(data.val) == manifest["windows"]["sim_000"]["val"]
    assert data.describe()["data_version"] == manifest["data_version"]


def test_etl_test_files_are_not_even_opened(tmp_path: Path) -> None:
    windows = _etl_output(tmp_path)
    for part in windows.glob("scene=*/split=test/*.parquet"):
        part.write_bytes(b"not parquet")  # opening it would fail
    load_search_data(WindowSpec(), windows_dir=windows)
