"""The Dask client an Airflow task gives the ETL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def task_dask_client(settings: Any) -> Iterator[Any | None]:
    """None when `TRAJ_DASK_ADDRESS` is set (the ETL connects to that scheduler itself), else a
    LocalCluster of threads inside the task process.

    Not worker processes: Airflow 3 runs a task with its metadata-DB URL replaced by an
    unusable one, and a spawned Dask worker re-imports the task's `__main__` (the airflow CLI),
    whose settings then fail to load. For process parallelism, point TRAJ_DASK_ADDRESS at a
    Dask scheduler (`dask scheduler` + `dask worker`).

    The dashboard gets a free port (`:0`): `None` means Dask's fixed 8787, taken by any other
    cluster on the machine (another ETL run, a dask-scheduler), and warned about on every run.
    Dask's logging goes to the task log at WARNING instead of its own stderr handler.
    """
    import logging

    import distributed

    from trajectory_common.logs import adopt_logger

    for name in ("distributed", "distributed.client", "distributed.gc"):  # Dask's own handlers
        adopt_logger(name, logging.WARNING)
    if settings.dask_address:
        yield None
        return
    threads = settings.dask_workers * settings.dask_threads_per_worker
    with (
        distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=threads,
                                 dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
