"""`python -m trajectory.tuning.worker INDEX`: one more worker of a running search.

Started by `run_tuning` with the job as JSON on stdin (settings, options, study, storage,
parent run, trial limit, deadline). It loads the same train/val windows and draws trials of
the same study until the study is full; exit code 0 when done, that of the error otherwise.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from trajectory.config import Settings
from trajectory.exceptions import TrajectoryError, exit_code

log = logging.getLogger("trajectory.tuning.worker")


def run_job(job: dict[str, Any], index: int) -> int:
    """Rebuild the worker that `run_tuning` describes in `job` and run it; -> trials run."""
    from trajectory.data.windows import WindowSpec
    from trajectory.tuning.data import load_search_data
    from trajectory.tuning.search import TuneOptions, base_config, trial_space
    from trajectory.tuning.study import Worker

    settings = Settings(**job["settings"])
    paths = ("config_path", "write_to", "raw_dir", "windows_dir")
    fields: dict[str, Any] = {k: Path(v) if k in paths and v is not None else v
                              for k, v in job["options"].items()}
    options = TuneOptions(**fields)
    spec = WindowSpec.from_settings(settings)
    data = load_search_data(spec, options.raw_dir, options.windows_dir)
    base = base_config(options, settings, job["workers"])
    worker = Worker(settings=settings, data=data, spec=spec, base=base, space=trial_space(base),
                    study_name=job["study_name"], storage=job["storage"],
                    parent_run_id=job["parent_run_id"], max_trials=job["max_trials"],
                    deadline=job["deadline"], seed=settings.seed + index)
    return worker.run()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,  # stderr reads as ERROR in Airflow
                        format=f"%(asctime)s %(levelname)s worker-{argv[0]} %(name)s: %(message)s")
    for noisy in ("urllib3", "httpx", "alembic", "mlflow.store", "trajectory.training.train"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per trial is enough
    try:
        n = run_job(json.loads(sys.stdin.read()), int(argv[0]))
    except TrajectoryError as err:
        log.error("%s", err)
        return exit_code(err)
    log.info("worker %s done: %d trials", argv[0], n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
