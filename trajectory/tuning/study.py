"""The Optuna side of a search: storage, sampler and pruner, the objective, one worker's loop.

Every worker (the calling process, and any `python -m trajectory.tuning.worker` beside it)
loads the same study from the RDB storage and draws trials until the study holds `max_trials`
or the deadline passes. A trial trains with `trajectory.training.train`, reports the
validation ADE (K=1) of every epoch to the median pruner, and is logged as a child run of the
search's MLflow run.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from trajectory.config import Settings
from trajectory.exceptions import ConfigError, ModelError, TrajectoryError

if TYPE_CHECKING:
    import optuna

    from trajectory.data.windows import WindowSpec
    from trajectory.tracking.tuning import SearchTracker
    from trajectory.training.train import TrainConfig
    from trajectory.tuning.data import SearchData
    from trajectory.tuning.space import Dimension

log = logging.getLogger(__name__)

STORAGE_FILE = "optuna.db"  # beside mlflow.db: both keep an alembic_version table of their own
DIRECTION: Literal["minimize"] = "minimize"  # validation ADE in metres
PRUNER_STARTUP_TRIALS = 3  # trials that run to the end before any is pruned
PRUNER_WARMUP_EPOCHS = 2  # epochs a trial trains before it can be pruned
SAMPLER_STARTUP_TRIALS = 5  # random draws before TPE models the results


def storage_url(settings: Settings) -> str:
    """TRAJ_OPTUNA_STORAGE, else SQLite in the work dir (`<work_dir>/optuna.db`)."""
    if settings.optuna_storage:
        return settings.optuna_storage
    return f"sqlite:///{(settings.work_dir / STORAGE_FILE).resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for logs, MLflow and the provenance entry."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a SQLAlchemy URL: show its scheme only
        return url.split("://", 1)[0] + "://..."


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage; SQLite waits up to a minute on a lock held by another worker. A bad
    URL is a ConfigError; a database that does not answer, a TrajectoryError (retried)."""
    import optuna

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except (ArgumentError, ValueError, ImportError) as err:  # a bad URL or a missing driver
        raise ConfigError(f"Optuna storage {redact(url)}: {err}") from err
    except SQLAlchemyError as err:  # unreachable or refusing: worth a retry
        raise TrajectoryError(f"cannot open the Optuna storage {redact(url)}: {err}") from err


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    """TPE; `constant_liar` keeps parallel workers from drawing next to a running trial."""
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=SAMPLER_STARTUP_TRIALS, multivariate=True, constant_liar=True
    )


def make_pruner() -> optuna.pruners.BasePruner:
    """Stop a trial whose validation ADE is above the median of earlier trials' at that epoch."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
    )


@dataclass
class Worker:
    """What one worker needs to run trials of a study."""

    settings: Settings
    data: SearchData
    spec: WindowSpec
    base: TrainConfig
    space: Sequence[Dimension]
    study_name: str
    storage: str
    parent_run_id: str
    max_trials: int  # the study's trial count at which every worker stops
    deadline: float | None = None  # time.time() after which no trial starts
    seed: int = 0
    pruner: Any = None  # default make_pruner()
    tracker: SearchTracker | None = field(default=None, repr=False)

    def run(self) -> int:
        """Draw trials until the study is full or the deadline passes; -> trials run here."""
        import optuna
        from optuna.study import MaxTrialsCallback

        from trajectory.tracking.tuning import SearchTracker

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.tracker = self.tracker or SearchTracker(self.settings)
        study = optuna.load_study(
            study_name=self.study_name,
            storage=make_storage(self.storage),
            sampler=make_sampler(self.seed),
            pruner=self.pruner or make_pruner(),
        )
        left = self.max_trials - len(study.get_trials(deepcopy=False))
        timeout = None if self.deadline is None else self.deadline - time.time()
        if left <= 0 or (timeout is not None and timeout <= 0):
            return 0
        before = len(study.get_trials(deepcopy=False))
        study.optimize(
            self.objective,
            n_trials=left,
            timeout=timeout,
            catch=(ModelError,),  # a diverging configuration fails its trial, not the search
            callbacks=[MaxTrialsCallback(self.max_trials, states=None), self._log_trial],
            gc_after_trial=True,
        )
        return len(study.get_trials(deepcopy=False)) - before

    def objective(self, trial: optuna.Trial) -> float:
        """Train one drawn configuration; -> its best validation ADE (K=1) over the epochs."""
        import optuna

        from trajectory.tracking.tuning import FAILED, FINISHED
        from trajectory.training.train import train
        from trajectory.tuning.space import apply, suggest

        assert self.tracker is not None, "run() makes the tracker"
        params = suggest(trial, self.space)
        config = apply(self.base, params)
        tags = {"optuna.study": self.study_name, "optuna.trial": str(trial.number)}
        run_id = self.tracker.start_trial(
            self.parent_run_id, f"trial-{trial.number:03d}", params, tags
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        best = math.inf

        def on_epoch(row: dict[str, float]) -> None:
            nonlocal best
            epoch, ade = int(row["epoch"]), float(row["val_ade"])
            best = min(best, ade)
            assert self.tracker is not None
            self.tracker.log_metrics(
                run_id, {"val_ade": ade, "train_loss": row["train_loss"]}, step=epoch
            )
            trial.report(ade, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: val ADE {ade:.3f} above the median")

        try:
            with tempfile.TemporaryDirectory(prefix="trial-") as tmp:
                result = train(self.data.train, self.data.val, config, Path(tmp),
                               on_epoch=on_epoch, progress=False, spec=self.spec)
        except optuna.TrialPruned:
            self.tracker.finish(run_id, FINISHED, metrics={"best_val_ade": best, "pruned": 1.0},
                                tags={"optuna.state": "PRUNED"})
            raise
        except BaseException as err:
            self.tracker.finish(run_id, FAILED, tags={"optuna.state": "FAIL",
                                                      "error": str(err)[:500]})
            raise
        value = min(row["val_ade"] for row in result.history)
        self.tracker.finish(run_id, FINISHED, tags={"optuna.state": "COMPLETE"}, metrics={
            "best_val_ade": value, "pruned": 0.0, "best_epoch": float(result.best_epoch),
            "train_seconds": result.seconds,
        })
        return value

    def _log_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """One line per finished trial: its state and value, the best so far, the count."""
        import optuna

        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
        best = min(complete, key=lambda t: t.value or math.inf) if complete else None
        value = f"val ADE {trial.value:.3f}" if trial.value is not None else ""
        if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            step = max(trial.intermediate_values)
            value = f"at epoch {step} val ADE {trial.intermediate_values[step]:.3f}"
        log.info(
            "trial %d %s %s | best %s | %d/%d trials finished",
            trial.number,
            trial.state.name.lower(),
            value,
            f"{best.value:.3f} (trial {best.number})" if best is not None else "none yet",
            len(done),
            self.max_trials,
        )
