"""`trajectory privacy`: purge what is past retention, erase one data subject (docs/privacy.md).

Registered on the main app by `trajectory/cli.py`; each command prints its counts as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from trajectory.exceptions import ConfigError, TrajectoryError, exit_code

app = typer.Typer(help="Privacy: retention purge and erasure of a data subject.",
                  no_args_is_help=True)

WorkDir = Annotated[Path | None, typer.Option(
    "--work-dir", help="Work dir (default: TRAJ_WORK_DIR or ./artifacts).")]


def _run(job: Any) -> None:
    """Run a job, print its report; a project error exits with its class's code."""
    try:
        report = job()
    except TrajectoryError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exit_code(err)) from None
    typer.echo(json.dumps(report, indent=2, default=str))


def _work_dir(work_dir: Path | None) -> Path:
    from trajectory.config import Settings

    return work_dir if work_dir is not None else Settings().work_dir


@app.command()
def purge(work_dir: WorkDir = None) -> None:
    """Delete prediction-log, quarantine and spill rows, batch jobs and evaluation folders
    older than their retention periods, in batches; audited as `privacy-purge`."""
    from trajectory.privacy.retention import purge as run_purge
    from trajectory.privacy.settings import get_privacy_settings

    _run(lambda: run_purge(_work_dir(work_dir), get_privacy_settings(), source="cli"))


@app.command()
def erase(
    client_id: Annotated[str | None, typer.Option(
        "--client-id", help="Erase a client: the X-Client-Id it sent.")] = None,
    scene: Annotated[str | None, typer.Option(
        "--scene", help="With --agent-id: the agent's scene (omit for requests without one).")]
    = None,
    agent_id: Annotated[int | None, typer.Option(
        "--agent-id", help="Erase an agent of --scene.")] = None,
    work_dir: WorkDir = None,
) -> None:
    """Delete one data subject's rows from the prediction log, quarantine, spill files and
    batch outputs; audited as `privacy-erase` with a count per place (pseudonyms only)."""
    from trajectory.privacy.erasure import Subject
    from trajectory.privacy.erasure import erase as run_erase
    from trajectory.privacy.settings import get_privacy_settings

    def job() -> dict[str, Any]:
        if (client_id is None) == (agent_id is None):
            raise ConfigError("give either --client-id or --agent-id (with --scene)")
        if scene is not None and agent_id is None:
            raise ConfigError("--scene goes with --agent-id")
        root = _work_dir(work_dir)
        privacy = get_privacy_settings()
        pseudonyms = privacy.pseudonymiser(root)
        subject = (Subject.client(pseudonyms, client_id) if client_id is not None
                   else Subject.agent(pseudonyms, scene, agent_id))  # type: ignore[arg-type]
        return run_erase(root, privacy, subject, source="cli")

    _run(job)
