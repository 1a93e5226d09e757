"""`trajectory model-card` against a real `mlflow server`: a registered version -> its card."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner
from walking import SPEC, walking_windows

from trajectory import tracking
from trajectory.cli import app
from trajectory.config import Settings
from trajectory.tracking.client import ENV_DEFAULTS
from trajectory.training import TrainConfig, evaluate, train

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@dataclass
class Registered:
    settings: Settings
    version: int
    run_id: str


@pytest.fixture(scope="module")
def registered(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registered]:
    """A 1-epoch mixture logged, registered and promoted to champion on the test server."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # what the CLI's settings read
        for name, value in ENV_DEFAULTS.items():
            mp.setenv(name, value)
        tag = uuid.uuid4().hex[:8]
        settings = Settings(
            work_dir=tmp_path_factory.mktemp("card"), experiment_name=f"card-{tag}",
            model_name=f"card-model-{tag}", device="cpu",
        )
        config = TrainConfig(model="mixture", epochs=1, batch_size=32, device="cpu", seed=3,
                             model_args={"hidden": 16, "heads": 2, "modes": 20})
        train_w, val, test = walking_windows(64, 0), walking_windows(24, 1), walking_windows(24, 2)
        result = train(train_w, val, config, settings.work_dir / "ckpt", progress=False,
                       spec=SPEC, meta={"data_version": "walk-v1"})
        run_id = tracking.log_training(
            settings, result=result, train_config=config, spec=SPEC, data_version="walk-v1",
            val_metrics=evaluate(result.model, val, k=20),
            test_metrics=evaluate(result.model, test, k=20),
        )
        version = tracking.register(settings, run_id)
        tracking.promote(settings, val)
        yield Registered(settings, version, run_id)


def card(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["model-card", *args])
    return result.exit_code, result.stdout, result.stderr


def test_card_of_a_version_holds_its_run(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data" / "walk" / "walk.txt"  # two agents, 3 frames: density 1-2
    raw.parent.mkdir(parents=True)
    raw.write_text("0 1 0.0 0.0\n0 2 1.0 0.0\n10 1 0.4 0.0\n20 1 0.8 0.0\n")
    name, version = registered.settings.model_name, registered.version
    code, out, err = card("--model", name, "--version", str(version),
                          "--data", "data/walk", "--note", "integration test")
    assert code == 0, err
    path = tmp_path / "model_cards" / f"{name}-v{version}.md"  # the default output
    assert f"wrote model_cards/{name}-v{version}.md" in out
    text = path.read_text()

    run = MlflowClient(registered.settings.tracking_uri()).get_run(registered.run_id)
    metrics = run.data.metrics
    assert f"MLflow run `{registered.run_id}`" in text
    assert "`walk-v1`" in text and "`data/walk`" in text and "integration test" in text
    assert "walk 1-2 (median 1)" in text  # crowd density counted from --data
    assert (f"| val | {metrics['val_ade']:.3f} | {metrics['val_fde']:.3f} | "
            f"{metrics['val_min_ade']:.3f} | {metrics['val_min_fde']:.3f} |") in text
    assert f"| test | {metrics['test_ade']:.3f} |" in text
    assert "| epochs (maximum) | 1 |" in text and "| seed | 3 |" in text
    assert "| device | `cpu` |" in text
    assert all(arg in text for arg in ("heads=2", "hidden=16", "modes=20"))
    assert "`@challenger`, `@champion`" in text and "promoted: no champion yet" in text
    # the mixture is in the checked-in benchmark: its per-scene rows, labelled as such
    models = json.loads((ROOT / "benchmarks" / "eth_ucy.json").read_text())["models"]
    cv, mix = models["cv"]["k1"]["eth"], models["mixture"]["k1"]["eth"]
    eth_row = f"| eth | {cv[0]:.2f}/{cv[1]:.2f} | {mix[0]:.2f}/{mix[1]:.2f} |"
    assert "Not this version's weights" in text and eth_row in text
    assert "TRAJ_SEED=3 .venv/bin/trajectory run --data data/walk --model mixture" in text


def test_card_by_alias_and_to_a_chosen_path(registered: Registered, tmp_path: Path) -> None:
    output = tmp_path / "cards" / "champion.md"
    code, out, err = card("--model", registered.settings.model_name, "--version", "champion",
                          "--output", str(output))
    assert code == 0, err
    assert f"wrote {output}" in out
    assert output.read_text().startswith(
        f"# Model card: `{registered.settings.model_name}` version {registered.version}\n")


@pytest.mark.parametrize(
    ("model", "version", "words"),
    [
        ("no-such-model", "1", "no registered model 'no-such-model'"),
        (None, "99", "has no version or alias '99'"),
        (None, "nobody", "has no version or alias 'nobody'"),
    ],
)
def test_unknown_model_or_version_is_one_clear_line(
    registered: Registered, tmp_path: Path, model: str | None, version: str, words: str
) -> None:
    name = model or registered.settings.model_name
    code, _, err = card("--model", name, "--version", version,
                        "--output", str(tmp_path / "x.md"))
    assert code == 4, err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.md").exists()


def test_unreachable_mlflow_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unused_port: int
) -> None:
    uri = f"http://127.0.0.1:{unused_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code, _, err = card("--model", "m", "--version", "1", "--output", str(tmp_path / "x.md"))
    assert code == 5, err
    assert uri in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_card_from_the_embedded_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQL store types versions differently from the REST one; both must work."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(work_dir=tmp_path / "work", device="cpu")
    config = TrainConfig(model="cv", device="cpu")
    val = walking_windows(16, 1)
    result = train(walking_windows(16, 0), val, config, tmp_path / "ckpt", progress=False, spec=SPEC)
    run_id = tracking.log_training(settings, result=result, train_config=config, spec=SPEC,
                                   data_version="walk-v1", val_metrics=evaluate(result.model, val))
    tracking.register(settings, run_id)
    for version in ("1", "challenger"):
        output = tmp_path / f"{version}.md"
        code, _, err = card("--model", settings.model_name, "--version", version,
                            "--work-dir", str(settings.work_dir), "--output", str(output))
        assert code == 0, err
        assert f"MLflow run `{run_id}`" in output.read_text()
    code, _, err = card("--model", settings.model_name, "--version", "2",
                        "--work-dir", str(settings.work_dir), "--output", str(tmp_path / "x.md"))
    assert code == 4 and "versions: 1; aliases: @challenger->v1" in err
