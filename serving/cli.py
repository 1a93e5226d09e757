"""The `trajectory serve`, `score` and `replay-log` commands (attached to the main typer app).

    app.command()(serve); app.command()(score); app.command("replay-log")(replay_log)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP prediction service (settings from SERVING_* variables)."""
    import uvicorn

    from serving.config import load_serving_settings

    load_serving_settings()  # fail here, with the variable's name, not inside a worker
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO"}
    uvicorn.run(
        "serving.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=30,
        log_config=log_config,
    )


def score(
    input_csv: Annotated[Path, typer.Argument(
        help="Raw tracks (CSV with header, or ETH text), or a folder of the ETL's Parquet windows."
    )],
    output_csv: Annotated[
        Path | None, typer.Option("--output", "-o", help="Scored CSV to write.")
    ] = None,
    parquet: Annotated[
        Path | None, typer.Option(help="Also (or only) write partitioned Parquet to this folder.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model URI (models:/name@alias, builtin:cv); default: the champion."),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Samples per window (default: SERVING_BATCH_K).", min=1)
    ] = None,
    workers: Annotated[int | None, typer.Option(
        help="Dask worker processes of a LocalCluster (default: TRAJ_DASK_WORKERS); 0: score "
        "in this process.", min=0,
    )] = None,
    threads_per_worker: Annotated[int | None, typer.Option(
        help="Torch threads per worker (default: TRAJ_DASK_THREADS_PER_WORKER).", min=1
    )] = None,
    dask_address: Annotated[str | None, typer.Option(
        envvar="TRAJ_DASK_ADDRESS", help="Score on this Dask scheduler (it must see the files)."
    )] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score every observation window of a raw tracks file (same code as POST /v1/batch),
    on a Dask cluster: a LocalCluster by default, or the scheduler at --dask-address."""
    from tqdm import tqdm

    from serving.batch import score_csv
    from serving.config import load_serving_settings
    from serving.registry import RegistrySource
    from serving.schemas import BatchProgress, LineError

    settings = load_serving_settings(auth_required=False)
    core = settings.trajectory_settings()
    uri = model or settings.variants[settings.default_variant]
    served = RegistrySource(core).load(uri)
    bars: list[tqdm] = []  # made at the first progress, so an early error prints alone

    def show(p: BatchProgress, errors: list[LineError]) -> None:
        if not bars:
            bars.append(tqdm(total=p.bytes_total, unit="B", unit_scale=True, desc="score",
                             disable=not progress, leave=False))  # fmt: skip
        bars[0].n = p.bytes_read
        bars[0].set_postfix(windows=p.windows, rejected=p.rows_rejected, refresh=True)

    def started(runner: object) -> None:
        link = getattr(runner, "dashboard_link", None)
        if link and progress:
            typer.echo(f"Dask dashboard: {link}", err=True)

    n_workers = core.dask_workers if workers is None else workers
    threads = threads_per_worker or core.dask_threads_per_worker
    if n_workers == 0 and not dask_address:
        import torch

        torch.set_num_threads(threads)  # scoring in this process: its own share of the cores
    try:
        report = score_csv(
            input_csv, output_csv, served, settings, show, k=k, parquet_dir=parquet,
            address=dask_address or None,
            workers=n_workers,
            threads_per_worker=threads,
            on_start=started,
        )
    finally:
        for bar in bars:
            bar.close()
    where = " and ".join(str(p) for p in (output_csv, parquet) if p is not None)
    typer.echo(
        f"{report.windows} windows scored with {served.name} v{served.version} -> {where} "
        f"({report.rows} rows, {report.rows_rejected} rejected: {report.errors_path}; "
        f"{report.seconds:.1f} s, {report.workers or 'no'} Dask worker(s))"
    )


def replay_log() -> None:
    """Import prediction-log spill files of SERVING_WORK_DIR, and journals a killed service
    left there, into the database, exactly once (the service also does it at start-up); see
    runbooks/prediction-log-quarantine.md."""
    from serving.config import load_serving_settings
    from serving.db import open_database
    from serving.spills import replay_spills
    from trajectory.privacy.pseudonym import load_pseudonymiser

    settings = load_serving_settings(auth_required=False)
    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    pseudonyms = load_pseudonymiser(key, settings.work_dir)
    engine = open_database(settings.resolved_database_url(), pseudonyms)
    try:
        report = replay_spills(engine, settings.work_dir, pseudonyms)
    finally:
        engine.dispose()
    typer.echo(
        f"{report.files} file(s) replayed from {settings.work_dir}: {report.rows} rows written, "
        f"{report.quarantined} quarantined; {report.skipped} already imported (deleted)"
    )
