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

from trajectory.exceptions import TrajectoryError, exit_code

app = typer.Typer(
    help="Trajectory prediction: ETL, training tracked in MLflow, benchmarks and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: download public benchmarks.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks with checked-in protocols.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

F = TypeVar("F", bound=Callable[..., Any])

DataDir = Annotated[
    Path | None,
    typer.Option("--data", help="Raw track files (ETH/UCY text or CSV). Default: synthetic crowd."),
]
WorkDir = Annotated[
    Path | None, typer.Option("--work-dir", help="Where outputs go (default: TRAJ_WORK_DIR or ./artifacts).")
]
ModelOpt = Annotated[str, typer.Option("--model", help="Model name: cv or mixture.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Maximum training epochs.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]


def _friendly(fn: F) -> F:
    """Turn project errors into one clear line on stderr and the exit code of their class."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrajectoryError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exit_code(err)) from None

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
    model: ModelOpt = "mixture",
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
    model: ModelOpt = "mixture",
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
    model: Annotated[list[str], typer.Option("--model", help="cv and/or mixture; repeatable.")],
    output: Annotated[Path, typer.Option("--output", help="JSON file to write (merged per model).")],
    epochs: EpochsOpt = None,
    seed: Annotated[
        list[int] | None,
        typer.Option(help="Training seed; repeat for several (scores are means over seeds)."),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Leave-one-scene-out ETH/UCY benchmark (observe 8, predict 12): K=1 and best-of-20."""
    from trajectory.bench import format_table, run_eth_ucy

    seeds = seed or [0]
    result = run_eth_ucy(data, model, output, epochs=epochs, seed=seeds, device=device)
    typer.echo(format_table(result))


@app.command("model-card")
@_friendly
def model_card(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    version: Annotated[str, typer.Option("--version", help="Version number, or an alias.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Default: model_cards/<name>-v<version>.md.")
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
    """`serve` and `score` live with the service; their heavy imports stay inside them."""
    from serving.cli import score, serve

    app.command()(_friendly(serve))
    app.command()(_friendly(score))


_attach_serving()


def main() -> None:
    app()
