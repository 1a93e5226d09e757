"""Where batch scoring's tasks run: a Dask cluster, or this process, behind one small API.

`open_runner` gives a `Runner` for, in order of precedence: a Dask client the caller holds
(the Airflow task's), a scheduler address (`--dask-address`, TRAJ_DASK_ADDRESS; in compose,
the stack's own dask-scheduler), a LocalCluster of `workers` processes, or no cluster at all
(`workers=0`: the same tasks, one after another, in this process). The tasks and their order
of results are the same everywhere, so every way gives the same output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _Done:
    """A task of the in-process runner: run when submitted (one at a time, in order)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class Runner:
    """Submits tasks to a Dask client, or runs them at once when there is none."""

    def __init__(self, client: Any | None, threads_per_worker: int | None = None) -> None:
        self.client = client
        self.threads_per_worker = threads_per_worker  # torch threads a task may use

    @property
    def workers(self) -> int:
        """Worker processes (0: this process)."""
        if self.client is None:
            return 0
        return len(self.client.scheduler_info().get("workers", {}))

    @property
    def dashboard_link(self) -> str | None:
        return None if self.client is None else getattr(self.client, "dashboard_link", None)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.client is None:
            return _Done(fn(*args))
        return self.client.submit(fn, *args, pure=False)

    def share(self, value: Any) -> Any:
        """`value` sent once to every worker (the model): pass the result to `submit`."""
        if self.client is None:
            return value
        return self.client.scatter(value, broadcast=True, hash=False)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        """Results as tasks finish (in order in this process)."""
        if self.client is None:
            for future in futures:
                yield future.result()
            return
        from distributed import as_completed

        for future in as_completed(futures):
            yield future.result()


@contextmanager
def open_runner(
    *,
    client: Any | None = None,
    address: str | None = None,
    workers: int = 0,
    threads_per_worker: int = 1,
    memory_limit: str | None = None,
    dashboard_address: str | None = None,
) -> Iterator[Runner]:
    """A runner for the first of: `client`, `address`, `workers` > 0, this process."""
    if client is not None:
        yield Runner(client, None)
        return
    if address:
        from distributed import Client

        with Client(address) as remote:
            yield Runner(remote, None)
        return
    if workers <= 0:
        yield Runner(None, None)
        return
    import dask
    from distributed import Client, LocalCluster

    # as in the ETL: Dask's fixed MALLOC_TRIM_THRESHOLD_ makes every large numpy temporary
    # an mmap zero-filled afresh, which slowed windowing ~1.5x
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    environ |= {"OMP_NUM_THREADS": str(threads_per_worker)}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one task at a time; torch gets threads_per_worker threads
            processes=True,
            dashboard_address=dashboard_address,
            memory_limit=memory_limit,
        ) as cluster,
        Client(cluster) as local,
    ):
        yield Runner(local, threads_per_worker)
