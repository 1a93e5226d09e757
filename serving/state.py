"""Everything the lifespan opens, in one object on `app.state.serving`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from serving.batcher import MicroBatcher
from serving.cache import PredictionCache
from serving.config import ServingSettings
from serving.jobs import BatchJobs
from serving.metrics import ServingMetrics
from serving.predictions_log import PredictionLog
from serving.registry import VariantSet
from serving.reloader import ModelReloader
from serving.routing import Router
from trajectory.privacy.pseudonym import Pseudonymiser


@dataclass
class ServingState:
    settings: ServingSettings
    metrics: ServingMetrics
    variants: VariantSet
    reloader: ModelReloader
    router: Router
    cache: PredictionCache
    engine: Engine
    log: PredictionLog
    batcher: MicroBatcher
    jobs: BatchJobs
    pseudonyms: Pseudonymiser
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run work after the response (shadow scoring, cache writes); awaited at shutdown."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)
