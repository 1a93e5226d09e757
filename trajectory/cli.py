"""The `trajectory` command: one entry point for the data, training, benchmark and serving jobs."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from trajectory.exceptions import InputFileError, TrajectoryError, exit_code
from trajectory.privacy.cli import app as privacy_app

app = typer.Typer(
    help="Trajectory prediction: ETL, training tracked in MLflow, benchmarks and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings are paragraphs: single line breaks are joined
)
data_app = typer.Typer(help="Datasets: download public benchmarks.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks with checked-in protocols.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(privacy_app, name="privacy")

F = TypeVar("F", bound=Callable[..., Any])

DataDir = Annotated[
    Path | None,
    typer.Option("--data", help="Raw track files (ETH/UCY text or CSV). Default: synthetic crowd."),
]
WorkDir = Annotated[
    Path | None, typer.Option("--work-dir", help="Where outputs go (default: TRAJ_WORK_DIR or ./artifacts).")
]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="calibrated, mixture or cv (default: trajectory/training/config.json's)."
)]
EpochsOpt = Annotated[int | None, typer.Option(
        "--epochs", help="Maximum training epochs (default: trajectory/training/config.json)."
    )]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]


def _friendly(fn: F) -> F:
    """Turn project errors into one clear line on stderr and the exit code of their class.

    A file-system error that no check turned into a project error (a path the user gave
    that cannot be read or written) is still one line, with the exit code of InputFileError:
    a user mistake never ends in a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrajectoryError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exit_code(err)) from None
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            typer.secho(f"error: {where}{err.strerror or err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exit_code(InputFileError(str(err)))) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Dask reads this when `distributed` is first imported, which happens later, in a command
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    for noisy in ("urllib3", "httpx", "alembic", "mlflow.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(work_dir: Path | None = None, **overrides: Any):
    from trajectory.config import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if work_dir is not None:
        values["work_dir"] = work_dir
    return Settings(**values)


@app.command()
@_friendly
def run(
    data: DataDir = None,
    work_dir: WorkDir = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """The main job, end to end: ETL -> train -> evaluate -> register in MLflow -> promote."""
    from trajectory.pipeline import print_summary, run_pipeline

    settings = _settings(work_dir, device=device)
    print_summary(run_pipeline(settings, data_dir=data, model=model, epochs=epochs), settings)


@app.command()
@_friendly
def simulate(
    output: Annotated[Path, typer.Argument(help="Folder for the raw files.")],
    scenes: Annotated[int, typer.Option(help="Number of scenes.")] = 3,
    agents: Annotated[int, typer.Option(help="Agents per scene.")] = 24,
    frames: Annotated[int, typer.Option(help="Frames per scene (0.4 s each).")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
) -> None:
    """Write a deterministic synthetic crowd in the ETH/UCY raw text format."""
    from trajectory.data.simulate import simulate_crowd

    paths = simulate_crowd(output, n_scenes=scenes, agents_per_scene=agents, n_frames=frames, seed=seed)
    typer.echo(f"wrote {len(paths)} raw files under {output}")


@app.command()
@_friendly
def etl(
    input_dir: Annotated[Path, typer.Argument(help="Folder of raw track files.")],
    output: Annotated[Path, typer.Argument(help="Folder for the windows (Parquet) and manifest.")],
    dask_address: Annotated[
        str | None, typer.Option(help="Existing Dask scheduler; default a LocalCluster.")
    ] = None,
) -> None:
    """Raw files -> validated tracks -> observation/prediction windows in Parquet (Dask)."""
    from trajectory.data.etl import run_etl

    result = run_etl(input_dir, output, _settings(dask_address=dask_address))
    typer.echo(result.summary())


@app.command()
@_friendly
def train(
    windows: Annotated[Path, typer.Argument(help="ETL output folder (with manifest.json).")],
    work_dir: WorkDir = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    device: DeviceOpt = "auto",
    promote: Annotated[bool, typer.Option(help="Run the promotion gate afterwards.")] = True,
) -> None:
    """Train on ETL windows, log to MLflow, register as `challenger`, then the promotion gate."""
    from trajectory.pipeline import print_summary, train_and_register

    settings = _settings(work_dir, device=device)
    result = train_and_register(settings, windows, model=model, epochs=epochs, promote=promote)
    print_summary(result, settings)


@app.command()
@_friendly
def promote(
    windows: Annotated[Path, typer.Argument(help="ETL output whose validation split decides.")],
    work_dir: WorkDir = None,
    min_improvement: Annotated[
        float | None, typer.Option(help="Metres of ADE the challenger must gain.")
    ] = None,
) -> None:
    """Move alias `champion` to `challenger` if it is better on the same validation windows."""
    from trajectory.pipeline import promote_on

    decision = promote_on(_settings(work_dir), windows, min_improvement=min_improvement)
    typer.echo(decision.reason)


@app.command()
@_friendly
def tune(
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to add to the study.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="Raw leave-one-scene-out fold: reads FOLDER/train and FOLDER/val "
        "only (e.g. ../shared/data/eth_ucy/zara1).")] = None,
    windows: Annotated[Path | None, typer.Option(
        "--windows", help="ETL output folder: reads its train and val splits only. Default, "
        "without --data: WORK_DIR/windows.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds after which no new trial starts (a running one finishes).")
    ] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Worker processes sharing the study, one torch thread each; "
        "0 = one per usable CPU core (one on CUDA), at most --trials.")] = 0,
    model: Annotated[str | None, typer.Option(
        "--model", help="Model to tune (default: the configuration's, mixture).")] = None,
    study: Annotated[str | None, typer.Option(
        "--study", help="Study name; an existing study is continued (default: a new "
        "MODEL-DATAVERSION-UTCTIME).")] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna RDB URL (default: TRAJ_OPTUNA_STORAGE, else "
        "sqlite:///WORK_DIR/optuna.db; PostgreSQL in compose).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Epochs per trial (default: the configuration's).")] = None,
    max_train_windows: Annotated[int | None, typer.Option(
        "--max-train-windows", min=1, help="Train each trial on this many random train "
        "windows (default: all).")] = None,
    write_config: Annotated[bool, typer.Option(
        "--write-config/--no-write-config", help="Write the best trial into --config.")
    ] = True,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Training configuration read and rewritten (default: "
        "trajectory/training/config.json, under version control).")] = None,
    work_dir: WorkDir = None,
    device: DeviceOpt = "auto",
) -> None:
    """Hyperparameter search with Optuna on train and validation data only (never test).

    A TPE sampler draws lr, weight_decay, batch_size and the model args the configuration
    sets (hidden, dropout, ...: the space is declared in trajectory/tuning/space.py); a
    median pruner stops a trial whose validation ADE (K=1) at an epoch is above the median
    of earlier trials'. The objective is the best validation ADE over a trial's epochs. The study lives
    in an Optuna RDB storage; each trial is a nested MLflow run under one parent run (in the
    experiment TRAJ_EXPERIMENT_NAME-tuning) that logs the study, storage (no password),
    trial counts, best value and params. One log line per finished trial. The best
    configuration is written atomically into --config, keeping the keys not searched, with
    a `provenance` entry: study name, trials (complete/pruned/failed), best val ADE, date
    and the data used (train/val only). Review it with `git diff` and commit it.
    """
    from trajectory.training.train import CONFIG_PATH
    from trajectory.tuning import TuneOptions, run_tuning

    settings = _settings(work_dir, device=device)
    if data is None and windows is None:
        windows = settings.windows_dir
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # the per-trial lines suffice
        logging.getLogger("trajectory.training.train").setLevel(logging.WARNING)
    path = config or CONFIG_PATH
    options = TuneOptions(
        trials=trials, timeout=timeout, workers=workers, model=model, study=study,
        storage=storage, epochs=epochs, max_train_windows=max_train_windows,
        config_path=path, write_to=path if write_config else None,
        raw_dir=data, windows_dir=windows,
    )
    typer.echo(run_tuning(settings, options).summary())


@data_app.command("download")
@_friendly
def download(
    dataset: Annotated[str, typer.Argument(help="Dataset name: eth-ucy.")],
    dest: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("data"),
    base_url: Annotated[str | None, typer.Option(help="Mirror URL (default: the public source).")] = None,
) -> None:
    """Download a public dataset, checking every file's SHA-256."""
    from trajectory.data.download import download_dataset

    root = download_dataset(dataset, dest, base_url=base_url)
    typer.echo(f"{dataset}: verified under {root}")


@bench_app.command("eth-ucy")
@_friendly
def bench_eth_ucy(
    data: Annotated[Path, typer.Option("--data", help="ETH/UCY root (eth/ hotel/ univ/ zara1/ zara2/).")],
    model: Annotated[list[str], typer.Option(
        "--model", help="A registered model name (cv, cv-grid, mixture...); repeatable.")],
    output: Annotated[Path, typer.Option("--output", help="JSON file to write (merged per model).")],
    epochs: EpochsOpt = None,
    seed: Annotated[
        list[int] | None,
        typer.Option(help="Training seed; repeat for several (scores are means over seeds)."),
    ] = None,
    device: DeviceOpt = "auto",
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, help="Folds trained at once, in worker processes (one thread each)."
    )] = 1,
    label: Annotated[str | None, typer.Option(
        "--label", help="Store the entry under this name instead of the model's (one --model)."
    )] = None,
) -> None:
    """Leave-one-scene-out ETH/UCY benchmark (observe 8, predict 12): ADE/FDE at K=1 and
    best-of-20, brier-minFDE, miss rate and NLL (scale fitted on each fold's val/). Learned
    models train with trajectory/training/config.json."""
    from trajectory.bench import format_table, run_eth_ucy

    seeds = seed or [0]
    result = run_eth_ucy(data, model, output, epochs=epochs, seed=seeds, device=device,
                         jobs=jobs, label=label)
    typer.echo(format_table(result))


@app.command("evaluate", help=(
    "Score a model on a raw folder: ADE/FDE at K=1, minADE/minFDE, brier-minFDE and miss rate "
    "over 20 outputs, NLL of the true future, and a reliability table of the mode weights "
    "(metres).\n\n"
    "Windows follow the model's checkpoint window spec (else observe 8, predict 12). Rejected "
    "lines are listed by file and line; the windows they cost are counted as dropped.\n\n"
    "NLL, in nats per predicted point: each mode is an isotropic Gaussian with std c*t/T at "
    "step t; c is fitted by maximum likelihood on the folder's validation windows, or on the "
    "scored windows when it has none."
), epilog=(
    "Examples:\n\n"
    "  trajectory evaluate --model models:/trajectory-forecaster@champion --data data/new\n\n"
    "  trajectory evaluate --model artifacts/checkpoints/VERSION/model.pt --data DIR --split all\n\n"
    "  trajectory evaluate --model builtin:cv-grid --data ../shared/data/eth_ucy/zara1 "
    "--output zara1.json"
))
@_friendly
def evaluate_model(
    model: Annotated[str, typer.Option(
        "--model", metavar="URI|PATH|builtin:NAME",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID (MLflow, "
        "TRAJ_ settings), a checkpoint file (model.pt), or builtin:cv / builtin:cv-grid.")],
    data: Annotated[Path, typer.Option(
        "--data", help="Raw folder: ETH/UCY text or CSV files, read and validated as by the "
        "ETL. Files under train/ val/ test/ folders keep that split; other scenes are split "
        "by time 70/15/15.")],
    split: Annotated[str, typer.Option(
        "--split", metavar="test|val|train|all", help="Windows to score; all = the three "
        "together.")] = "test",
    output: Annotated[Path | None, typer.Option(
        "--output", help="Also write the scores as JSON (atomically).")] = None,
    work_dir: WorkDir = None,
    device: DeviceOpt = "auto",
) -> None:
    """Score a model on a raw folder (the help text above); print a table, maybe write JSON."""
    from trajectory.evaluation import evaluate_folder, format_report, write_report

    report = evaluate_folder(model, data, split, _settings(work_dir), device=device)
    typer.echo(format_report(report))
    if output is not None:
        typer.echo(f"wrote {write_report(report, output)}")


@app.command("model-card")
@_friendly
def model_card(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    version: Annotated[str, typer.Option("--version", help="Version number, or an alias.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Default: model_cards/NAME-vVERSION.md.")
    ] = None,
    work_dir: WorkDir = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Raw folder it was trained on (not in the run).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="How it was produced, printed as given.")] = None,
    benchmark: Annotated[
        Path | None, typer.Option(help="Per-scene numbers (default benchmarks/eth_ucy.json).")
    ] = None,
) -> None:
    """Write a Markdown model card for a registered version from its MLflow run."""
    from trajectory.model_card import DEFAULT_BENCHMARK, write_card

    path = write_card(_settings(work_dir), model, version, output,
                      benchmark_path=benchmark or DEFAULT_BENCHMARK, data_dir=data, note=note)
    typer.echo(f"wrote {path}")


@app.command()
@_friendly
def rollback(
    to_version: Annotated[
        int | None, typer.Option(help="Version to serve; default: the one the champion replaced.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Registered model name (default TRAJ_MODEL_NAME).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded on the version.")] = "manual rollback",
    work_dir: WorkDir = None,
) -> None:
    """Point alias `champion` back at an earlier version (no gate); the service follows."""
    from trajectory.tracking.registry import rollback_champion

    before, after = rollback_champion(_settings(work_dir, model_name=model), to_version, reason)
    typer.echo(f"champion: v{before} -> v{after}")


@app.command("api-key")
@_friendly
def api_key(
    hash_stdin: Annotated[
        bool, typer.Option("--hash-stdin", help="Hash a key read from stdin instead.")
    ] = False,
) -> None:
    """Make a new serving API key and its SHA-256 (the form SERVING_API_KEYS holds)."""
    import secrets

    from serving.config import hash_api_key

    key = sys.stdin.readline().strip() if hash_stdin else secrets.token_urlsafe(32)
    if not key:
        from trajectory.exceptions import ConfigError

        raise ConfigError("no key on stdin")
    if not hash_stdin:
        typer.echo(f"key   {key}")
    typer.echo(f"hash  {hash_api_key(key)}")


def _attach_serving() -> None:
    """`serve`, `score` and `replay-log` live with the service; their heavy imports stay
    inside them."""
    from serving.cli import replay_log, score, serve

    app.command()(_friendly(serve))
    app.command()(_friendly(score))
    app.command("replay-log")(_friendly(replay_log))


_attach_serving()


def _attach_dashboard() -> None:
    """`dashboard` lives in the dashboard package; Dash is imported only when it runs."""
    from dashboard.cli import dashboard

    app.command()(_friendly(dashboard))


_attach_dashboard()


def main() -> None:
    app()
