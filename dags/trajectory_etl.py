"""
### trajectory_etl: raw track files -> observation/prediction windows

Runs `trajectory.data.etl.run_etl` (Dask: the scheduler at `TRAJ_DASK_ADDRESS`, else a
LocalCluster of `TRAJ_DASK_WORKERS` threads in the task process) on the files under
`input_dir` and writes the windows (Parquet) and their manifest to `output_dir`.

The run is idempotent: the same input gives the same data version and the same files. The
`publish` task emits an event on the asset `trajectory://windows` (extra: `data_version`,
`windows_dir`) only when the data version changed, or when `force_publish` is set; that event
schedules `trajectory_train`.

Params: `input_dir` (empty: `TRAJ_DATA_DIR`, else `<work_dir>/raw`), `output_dir` (empty:
`<work_dir>/windows`), `force_publish`; any other conf key fails the run. The training that the
event starts takes its settings from the Airflow Variable `trajectory_train_conf` (see
trajectory_train). Not paused at creation: a trigger runs at once.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.assets import WINDOWS
from trajectory_common.conf import checked_params
from trajectory_common.dask import task_dask_client
from trajectory_common.defaults import DAG_KWARGS
from trajectory_common.logs import skip, task_logging


@dag(
    dag_id="trajectory_etl",
    **DAG_KWARGS,
    schedule=None,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["trajectory", "etl", "dask"],
    doc_md=__doc__,
    params={
        # "null" in the type makes a field optional in the trigger form
        "input_dir": Param(None, type=["null", "string"],
                           description="raw files; empty: TRAJ_DATA_DIR, else <work_dir>/raw"),
        "output_dir": Param(None, type=["null", "string"],
                            description="windows; empty: <work_dir>/windows"),
        "force_publish": Param(False, type="boolean",
                               description="emit the asset event even if nothing changed"),
    },
)
def trajectory_etl() -> None:
    @task
    def etl() -> dict[str, Any]:
        """Run the ETL; -> the data version before and after, and where the windows are."""
        from pathlib import Path

        from trajectory.config import get_settings
        from trajectory.data.dataset import read_manifest
        from trajectory.data.etl import run_etl

        task_logging(uses_mlflow=False)
        params = checked_params(get_current_context())
        settings = get_settings()
        input_dir = Path(params["input_dir"] or settings.data_dir or settings.work_dir / "raw")
        output_dir = Path(params["output_dir"] or settings.windows_dir)
        manifest = output_dir / "manifest.json"
        before = read_manifest(output_dir)["data_version"] if manifest.is_file() else None
        with task_dask_client(settings) as client:
            result = run_etl(input_dir, output_dir, settings, client=client, progress=False)
        return {"data_version": result.data_version, "previous_version": before,
                "windows_dir": str(output_dir.resolve()), "input_dir": str(input_dir.resolve())}

    @task(outlets=[WINDOWS])
    def publish(done: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        """Announce a new data version on the asset (skipped when nothing changed)."""
        force = get_current_context()["params"]["force_publish"]
        if done["data_version"] == done["previous_version"] and not force:
            skip(f"data version {done['data_version']} is unchanged")
        outlet_events[WINDOWS].extra = {"data_version": done["data_version"],
                                        "windows_dir": done["windows_dir"]}
        return done

    publish(etl())  # type: ignore[arg-type]  # an XComArg, resolved at run time


trajectory_etl()
