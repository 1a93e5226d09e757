"""
### trajectory_batch_score: score a raw tracks file with a registered model

Calls `serving.batch.score_csv`, the one batch-scoring function behind the API, the CLI and this
DAG, on Dask (the scheduler at TRAJ_DASK_ADDRESS, else a LocalCluster inside the task): the file
is read in chunks by the ETL's reader, cut into partitions by scene and time, windows are cut
by the shared windowing, and one output row is written per agent, window, horizon step and
sample. Rejected lines go to
`<output stem>.errors.csv`; the output is written to a temp file, then renamed.

Params: `input_csv` (ETH/UCY text or CSV with header), `output_path`, `model_uri`
(default: the service's default variant, `models:/trajectory-forecaster@champion` unless
`SERVING_VARIANTS` says otherwise; `builtin:cv` works without a registry),
`k` (samples per window); any other conf key fails the run. Not paused at creation.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.conf import checked_params
from trajectory_common.defaults import DAG_KWARGS
from trajectory_common.logs import task_logging


@dag(
    dag_id="trajectory_batch_score",
    **DAG_KWARGS,
    schedule=None,
    is_paused_upon_creation=False,
    tags=["trajectory", "scoring", "batch"],
    doc_md=__doc__,
    params={
        "input_csv": Param(type="string", minLength=1, description="raw tracks file to score"),
        "output_path": Param(type="string", minLength=1, description="output CSV path"),
        "model_uri": Param(None, type=["null", "string"],
                           description="empty: the service's default variant"),
        "k": Param(1, type="integer", minimum=1, maximum=20, description="samples per window"),
    },
)
def trajectory_batch_score() -> None:
    @task
    def score() -> dict[str, Any]:
        """Load the model and score the file; -> the report's numbers."""
        from pathlib import Path

        from trajectory_common.dask import task_dask_client

        from serving.batch import score_csv
        from serving.config import load_serving_settings
        from serving.registry import RegistrySource

        task_logging()
        params = checked_params(get_current_context())
        serving = load_serving_settings(auth_required=False)  # no HTTP here, no API keys
        core = serving.trajectory_settings()
        uri = params["model_uri"] or serving.variants[serving.default_variant]
        model = RegistrySource(core).load(uri)
        # TRAJ_DASK_ADDRESS: score_csv connects to that scheduler; else a LocalCluster here
        with task_dask_client(core) as client:
            report = score_csv(Path(params["input_csv"]), Path(params["output_path"]), model,
                               serving, k=params["k"], client=client)
        return {
            "model": model.describe(),
            "output_path": str(Path(params["output_path"]).resolve()),
            "errors_path": str(report.errors_path),
            "rows": report.rows,
            "rows_rejected": report.rows_rejected,
            "windows": report.windows,
            "output_rows": report.output_rows,
            "seconds": round(report.seconds, 3),
            "partitions": report.partitions,
        }

    score()


trajectory_batch_score()
