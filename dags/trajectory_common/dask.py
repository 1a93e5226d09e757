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
    """
    if settings.dask_address:
        yield None
        return
    from distributed import Client, LocalCluster

    threads = settings.dask_workers * settings.dask_threads_per_worker
    with (
        LocalCluster(processes=False, n_workers=1, threads_per_worker=threads,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client
