"""`run_tuning`: the one hyperparameter search behind `trajectory tune` and `trajectory_tune`.

1. Load train and validation windows (never test) from a raw fold or an ETL output.
2. Create the Optuna study (TPE sampler, median pruner, minimise validation ADE) in the RDB
   storage, or load it when a study of that name exists, and start the MLflow parent run.
3. Run the trials in `workers` processes sharing the study: this one and `workers - 1`
   `python -m trajectory.tuning.worker` processes, each training with one torch thread.
4. Log the outcome on the parent run and write the best configuration, with a `provenance`
   entry, into the training configuration (trajectory/training/config.json by default).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trajectory.config import Settings
from trajectory.exceptions import ConfigError, TrajectoryError
from trajectory.training.train import CONFIG_PATH, TrainConfig
from trajectory.tuning import study as st

log = logging.getLogger(__name__)

OBJECTIVE = "minimum over epochs of the validation ADE (K=1, metres)"


@dataclass
class TuneOptions:
    """What to search, on which data, for how long, and where the result goes."""

    trials: int
    timeout: float | None = None  # seconds after which no new trial starts
    workers: int = 0  # 0: one per usable CPU core (one on CUDA), at most `trials`
    model: str | None = None  # None: the configuration's model
    study: str | None = None  # None: a new name; an existing study is continued
    storage: str | None = None  # None: TRAJ_OPTUNA_STORAGE or <work_dir>/optuna.db
    epochs: int | None = None  # epochs per trial; None: the configuration's
    max_train_windows: int | None = None  # train on a random subset per trial
    config_path: Path = CONFIG_PATH  # the base configuration
    write_to: Path | None = CONFIG_PATH  # where the best goes (None: nowhere)
    raw_dir: Path | None = None  # a fold with train/ and val/
    windows_dir: Path | None = None  # an ETL output

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError("--trials must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError("--timeout must be a positive number of seconds")
        if self.workers < 0 or (self.epochs is not None and self.epochs < 1):
            raise ConfigError("--workers must be >= 0 and --epochs >= 1")


@dataclass
class TuneResult:
    study_name: str
    storage: str  # without password
    parent_run_id: str
    experiment_name: str
    trials: dict[str, int]  # total, complete, pruned, failed
    best_value: float
    best_trial: int
    best_params: dict[str, Any]
    written: Path | None  # the configuration file rewritten, if any
    provenance: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the file's content as written

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.trials.items())
        lines = [
            f"study          {self.study_name} ({self.storage})",
            f"trials         {counts}",
            f"best           val ADE {self.best_value:.4f} (trial {self.best_trial})",
            *(f"  {k} = {v}" for k, v in self.best_params.items()),
            f"MLflow         run {self.parent_run_id} in {self.experiment_name}",
            f"written to     {self.written}" if self.written else "not written (--no-write-config)",
        ]
        return "\n".join(lines)


def run_tuning(settings: Settings, options: TuneOptions, pruner: Any = None) -> TuneResult:
    """Search, log and write the best configuration; `pruner` replaces the median pruner
    (tests use it to force pruning)."""
    import optuna

    from trajectory.data.windows import WindowSpec
    from trajectory.tracking.tuning import FAILED, FINISHED, SearchTracker
    from trajectory.tuning.data import load_search_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    spec = WindowSpec.from_settings(settings)
    data = load_search_data(spec, options.raw_dir, options.windows_dir)
    workers = resolve_workers(options, settings)
    base = base_config(options, settings, workers)
    space = trial_space(base)
    storage = options.storage or st.storage_url(settings)
    name = options.study or default_study_name(base.model, data.data_version)
    study = optuna.create_study(
        study_name=name, storage=st.make_storage(storage), direction=st.DIRECTION,
        sampler=st.make_sampler(settings.seed), pruner=pruner or st.make_pruner(),
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"study {name!r} exists and does not minimise")
    already = len(study.get_trials(deepcopy=False))
    max_trials = already + options.trials
    tracker = SearchTracker(settings)
    parent = tracker.start_parent(
        name,
        params={"study": name, "storage": st.redact(storage), "sampler": "TPE",
                "pruner": type(pruner or st.make_pruner()).__name__, "objective": OBJECTIVE,
                "trials_requested": options.trials, "trials_before": already,
                "timeout_s": options.timeout, "workers": workers, "model": base.model,
                "epochs_per_trial": base.epochs, "max_train_windows": base.max_train_windows,
                "data": data.describe(), "base_config": str(options.config_path)},
        tags={"optuna.study": name, "data_version": data.data_version, "model": base.model},
    )
    log.info("study %s in %s: %d trials on %d workers, %d train / %d val windows; MLflow run %s",
             name, st.redact(storage), options.trials, workers, len(data.train), len(data.val),
             parent)
    deadline = None if options.timeout is None else time.time() + options.timeout
    worker = st.Worker(settings=settings, data=data, spec=spec, base=base, space=space,
                       study_name=name, storage=storage, parent_run_id=parent,
                       max_trials=max_trials, deadline=deadline, seed=settings.seed,
                       pruner=pruner, tracker=tracker)
    try:
        _run_workers(worker, options, workers)
        result = _finish(study, worker, options, data.describe(), storage)
    except BaseException as err:
        tracker.finish(parent, FAILED, tags={"error": str(err)[:500]})
        raise
    tracker.finish(
        parent, FINISHED,
        metrics={"best_val_ade": result.best_value, "best_trial": float(result.best_trial)}
        | {f"trials_{k}": float(v) for k, v in result.trials.items()},
        params={f"best.{k}": v for k, v in result.best_params.items()},
        tags={"written_to": str(result.written) if result.written else "not written"},
        documents={"tuning/provenance.json": result.provenance,
                   "tuning/search_space.json": {d.name: d.describe() for d in space}}
        | ({"tuning/config.json": result.config} if result.config else {}),
    )
    return result


def resolve_workers(options: TuneOptions, settings: Settings) -> int:
    """`options.workers`, or (0) one per usable core, one on CUDA; never more than trials."""
    if options.workers:
        return min(options.workers, options.trials)
    from trajectory.training.loop import resolve_device

    if resolve_device(settings.device).type == "cuda":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), options.trials))


def base_config(options: TuneOptions, settings: Settings, workers: int) -> TrainConfig:
    """The configuration trials start from: the file's, with the model, epochs, window cap,
    device and seed of this search, and one torch thread per worker when there are several."""
    config = TrainConfig.load(options.config_path, device=settings.device, seed=settings.seed)
    if options.model is not None and options.model != config.model:
        config = replace(config, model=options.model, model_args=_default_args(options.model))
    if options.epochs is not None:
        config = replace(config, epochs=options.epochs)
    if options.max_train_windows is not None:
        config = replace(config, max_train_windows=options.max_train_windows)
    if workers > 1:
        config = replace(config, num_threads=1)
    return config


def default_study_name(model: str, data_version: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{model}-{data_version}-{stamp}"


def _default_args(model: str) -> dict[str, Any]:
    """Another model than the configured one: the arguments it is built with by default."""
    from trajectory.models import build_model

    args = build_model(model).model_args()
    return {k: v for k, v in args.items() if k not in ("obs_len", "pred_len")}


def trial_space(base: TrainConfig) -> list[Any]:
    from trajectory.models import build_model
    from trajectory.tuning.space import space_for

    if not build_model(base.model).trainable:
        raise ConfigError(f"model {base.model!r} has nothing to train, hence nothing to tune")
    return space_for(base)


def _run_workers(worker: st.Worker, options: TuneOptions, workers: int) -> None:
    """This process is worker 0; workers 1.. are subprocesses given the job on stdin."""
    job = json.dumps({
        "settings": worker.settings.model_dump(mode="json"),
        "options": {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(options).items()},
        "workers": workers, "study_name": worker.study_name, "storage": worker.storage,
        "parent_run_id": worker.parent_run_id, "max_trials": worker.max_trials,
        "deadline": worker.deadline,
    })
    procs = []
    for index in range(1, workers):
        proc = subprocess.Popen([sys.executable, "-m", "trajectory.tuning.worker", str(index)],
                                stdin=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(job)
        proc.stdin.close()
        procs.append(proc)
    try:
        worker.run()
    finally:
        codes = [proc.wait() for proc in procs]
    failed = [i + 1 for i, code in enumerate(codes) if code != 0]
    if failed:
        raise TrajectoryError(f"tuning workers {failed} failed (their errors are logged above)")


def _finish(
    study: Any, worker: st.Worker, options: TuneOptions, data: dict[str, Any], storage: str
) -> TuneResult:
    """Count the trials, pick the best and write it with its provenance."""
    import optuna

    from trajectory.tracking.runs import git_commit
    from trajectory.tuning.best_config import write_best_config
    from trajectory.tuning.space import config_updates

    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    counts = {
        "total": len(trials),
        "complete": sum(t.state == states.COMPLETE for t in trials),
        "pruned": sum(t.state == states.PRUNED for t in trials),
        "failed": sum(t.state == states.FAIL for t in trials),
    }
    if not counts["complete"]:
        raise ConfigError(f"no trial of study {study.study_name!r} completed ({counts}); "
                          "give more --trials or a longer --timeout")
    best = study.best_trial
    provenance = {
        "written_by": "trajectory tune",
        "study": study.study_name,
        "storage": st.redact(storage),
        "trials": counts,
        "best_trial": best.number,
        "best_val_ade": best.value,
        "objective": OBJECTIVE,
        "tuned": [d.name for d in worker.space],
        "epochs_per_trial": worker.base.epochs,
        "max_train_windows": worker.base.max_train_windows,
        "data": data | {"note": "train and val splits only; no test data was read"},
        "mlflow_run_id": worker.parent_run_id,
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    written, content = None, {}
    if options.write_to is not None:
        updates = config_updates(worker.base, best.params)
        content = write_best_config(options.write_to, updates, provenance)
        written = Path(options.write_to)
        log.info("wrote the best configuration (trial %d) to %s", best.number, written)
    return TuneResult(
        study_name=study.study_name, storage=st.redact(storage),
        parent_run_id=worker.parent_run_id, experiment_name=_experiment(worker),
        trials=counts, best_value=float(best.value), best_trial=best.number,
        best_params=dict(best.params), written=written, provenance=provenance, config=content,
    )


def _experiment(worker: st.Worker) -> str:
    return worker.tracker.experiment_name if worker.tracker else worker.settings.experiment_name
