"""Dynamic micro-batching: concurrent requests share one windowing and one model call.

Requests queue their canonical tracks; one worker takes everything queued (up to a cap),
groups it by model and K, and runs each group in a single inference thread: one
`make_windows` call (see `inference.batch_windows`) and one call of the model's engine
(`serving.engine`, the same inference path as batch scoring).
While a group runs, new requests queue up, so batches grow with load and a lone request never
waits for company. If a group fails, its requests are retried one by one, so one bad request
cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.engine import engine_for
from serving.inference import CanonicalRequest, batch_windows
from serving.metrics import ServingMetrics
from serving.registry import ServedModel
from trajectory.models import TrajectoryModel

log = logging.getLogger(__name__)

Result = tuple[np.ndarray, np.ndarray]  # traj (A, K, T, 2), weights (A, K)


@dataclass
class _Item:
    model: ServedModel
    request: CanonicalRequest
    future: asyncio.Future[Result] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.request.points)


class MicroBatcher:
    """Queue + one worker task + one inference thread."""

    def __init__(self, max_windows: int, metrics: ServingMetrics) -> None:
        self._max, self._metrics = max_windows, metrics
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)

    async def predict(self, model: ServedModel, request: CanonicalRequest) -> Result:
        """Queue the request and wait for its share of a batched call."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(model, request, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = batch[0].size
            while size < self._max and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += item.size
            groups: dict[tuple[int, int], list[_Item]] = {}
            for item in batch:
                groups.setdefault((id(item.model), item.request.k), []).append(item)
            for items in groups.values():
                await self._call(items)

    async def _call(self, items: list[_Item]) -> None:
        items = [i for i in items if not i.future.done()]  # cancelled: the client went away
        if not items:
            return
        loop = asyncio.get_running_loop()
        model = items[0].model
        try:
            results = await loop.run_in_executor(
                self._pool, _run_group, model, [i.request for i in items]
            )
        except Exception as err:  # noqa: BLE001 - isolate the request that failed
            if len(items) > 1:
                for item in items:
                    await self._call([item])
            elif not items[0].future.done():
                items[0].future.set_exception(err)
            return
        self._metrics.batch_size.observe(sum(i.size for i in items))
        for item, result in zip(items, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)


def predict(model: TrajectoryModel, obs: np.ndarray, nbr: np.ndarray, k: int) -> Result:
    """The model's engine (built once per model version), as batch scoring calls it."""
    return engine_for(model).predict(obs, nbr, k)


def _run_group(model: ServedModel, requests: list[CanonicalRequest]) -> list[Result]:
    """Windows for every request, one model call, results split back per request."""
    pairs = batch_windows(requests, model.spec)
    obs = np.concatenate([o for o, _ in pairs])  # (B, T_obs, 2)
    nbr = np.concatenate([n for _, n in pairs])  # (B, M, T_obs, 2)
    traj, weights = predict(model.model, obs, nbr, requests[0].k)
    out, start = [], 0
    for o, _ in pairs:
        out.append((traj[start : start + len(o)], weights[start : start + len(o)]))
        start += len(o)
    return out
