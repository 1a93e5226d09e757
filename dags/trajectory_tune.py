"""
### trajectory_tune: hyperparameter search with Optuna, each trial a nested MLflow run

Manual only ("Trigger DAG w/ config" or the REST API). Calls `trajectory.tuning.run_tuning`,
the function behind `trajectory tune`: a TPE sampler and a median pruner on the validation ADE
(K=1) of every epoch, the study in the Optuna RDB storage (`TRAJ_OPTUNA_STORAGE`: PostgreSQL
in compose, else `<work_dir>/optuna.db`), trials in worker processes sharing the study (one per
CPU core, one on CUDA), one parent MLflow run in `<TRAJ_EXPERIMENT_NAME>-tuning` with a child
run per trial. Only the train and val splits of the windows are read, never test.

| param | values |
|---|---|
| `trials` | trials to run, 1 to 1000 |
| `timeout` | seconds after which no new trial starts; 0 = no limit |
| `model` | a trainable model: `mixture` (default) or `calibrated` |
| `epochs` | epochs per trial; 0 (default) = the training configuration's |
| `windows_dir` | an ETL output folder; empty: `<work_dir>/windows` |

Any other conf key fails the run. Not paused at creation: a trigger runs at once.

The best configuration, with its `provenance` (study, trial counts, best val ADE, data), is
written to `<work_dir>/tuning/<run id>/config.json` and logged on the parent run
(`tuning/config.json`): a proposal for `trajectory/training/config.json`, which is under version
control and baked into the image, so a person reviews and commits it (or runs
`trajectory tune` in a checkout, which rewrites that file in place).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.conf import checked_params
from trajectory_common.defaults import DAG_KWARGS, MLFLOW_RUN_XCOM, TRAINABLE_MODELS
from trajectory_common.logs import task_logging


@dag(
    dag_id="trajectory_tune",
    **DAG_KWARGS,
    schedule=None,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["trajectory", "tuning", "optuna", "mlflow"],
    doc_md=__doc__,
    params={
        "trials": Param(20, type="integer", minimum=1, maximum=1000, description="trials to run"),
        "timeout": Param(3600, type="integer", minimum=0, maximum=7 * 24 * 3600,
                         description="seconds after which no new trial starts; 0 = no limit"),
        "model": Param(TRAINABLE_MODELS[0], enum=TRAINABLE_MODELS, description="model to tune"),
        "epochs": Param(0, type="integer", minimum=0, maximum=500,
                        description="epochs per trial; 0 = the training configuration's"),
        # "null" in the type makes the field optional in the trigger form
        "windows_dir": Param(None, type=["null", "string"],
                             description="ETL output; empty: <work_dir>/windows"),
    },
)
def trajectory_tune() -> None:
    @task
    def tune() -> dict[str, Any]:
        """Run the search on the windows' train/val splits; -> the study's outcome."""
        import re
        import shutil
        from pathlib import Path

        from trajectory.config import get_settings
        from trajectory.training.train import CONFIG_PATH
        from trajectory.tuning import TuneOptions, run_tuning

        task_logging()
        context = get_current_context()
        params = checked_params(context)
        settings = get_settings()
        windows_dir = Path(params["windows_dir"] or settings.windows_dir)
        out = settings.work_dir / "tuning" / re.sub(r"[^A-Za-z0-9_.-]", "_", context["run_id"])
        out.mkdir(parents=True, exist_ok=True)
        proposal = out / "config.json"
        shutil.copyfile(CONFIG_PATH, proposal)
        result = run_tuning(settings, TuneOptions(
            trials=params["trials"], timeout=params["timeout"] or None, model=params["model"],
            epochs=params["epochs"] or None, config_path=proposal, write_to=proposal,
            windows_dir=windows_dir,
        ))
        context["ti"].xcom_push(key=MLFLOW_RUN_XCOM, value={
            "run_id": result.parent_run_id, "tracking_uri": settings.tracking_uri(),
            "experiment_name": result.experiment_name,
        })
        return {
            "study": result.study_name,
            "storage": result.storage,
            "trials": result.trials,
            "best_val_ade": result.best_value,
            "best_trial": result.best_trial,
            "best_params": result.best_params,
            "config_path": str(proposal),
            "run_id": result.parent_run_id,
            "windows_dir": str(windows_dir),
        }

    tune()


trajectory_tune()
