"""Hyperparameter search with Optuna: `run_tuning(settings, TuneOptions(trials=...))`.

    space.py        the search space, declared once; drawing and applying values
    data.py         train and validation windows only (a raw fold or an ETL output)
    study.py        RDB storage, TPE sampler, median pruner, the objective, one worker's loop
    search.py       run_tuning: study + MLflow parent run + workers + the best configuration
    best_config.py  the atomic rewrite of the training configuration, with provenance
    worker.py       `python -m trajectory.tuning.worker`: an extra worker process
"""

from trajectory.tuning.search import TuneOptions, TuneResult, run_tuning

__all__ = ["TuneOptions", "TuneResult", "run_tuning"]
