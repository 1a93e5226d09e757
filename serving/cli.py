"""The `trajectory serve` and `trajectory score` commands (attached to the main typer app).

    app.command()(serve); app.command()(score)
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
    input_csv: Annotated[Path, typer.Argument(help="Raw tracks: CSV with header, or ETH text.")],
    output_csv: Annotated[Path, typer.Option("--output", "-o", help="Scored CSV to write.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model URI (models:/name@alias, builtin:cv); default: the champion."),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Samples per window (default: SERVING_BATCH_K).", min=1)
    ] = None,
) -> None:
    """Score every observation window of a raw tracks file (same code as POST /v1/batch)."""
    import torch

    from serving.batch import score_csv
    from serving.config import load_serving_settings
    from serving.registry import RegistrySource

    settings = load_serving_settings(auth_required=False)
    # intra-op threads spin and fight the CSV writer thread: 1 measured 1.6x faster on 2 cores
    torch.set_num_threads(settings.torch_threads)
    uri = model or settings.variants[settings.default_variant]
    served = RegistrySource(settings.trajectory_settings()).load(uri)
    report = score_csv(input_csv, output_csv, served, settings, k=k)
    typer.echo(
        f"{report.windows} windows scored with {served.name} v{served.version} -> {output_csv} "
        f"({report.rows} rows, {report.rows_rejected} rejected: {report.errors_path}; "
        f"{report.seconds:.1f} s)"
    )
