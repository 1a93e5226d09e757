"""Prometheus metrics of one app instance, in its own registry (tests make many apps).

With several uvicorn workers each process keeps its own numbers; scrape each worker or run
one worker per container.

Labels take values from small fixed sets (route templates, methods, status codes, variant and
model names, cache levels): never a client, scene or agent id, which would both leak
identifiers to whoever reads the metrics and grow the series without bound.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "serving_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "serving_request_latency_seconds",
            "Request latency by route and A/B variant",
            ["route", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "serving_predicted_agents", "Agents predicted", ["variant", "shadow"], registry=r
        )
        self.cache = Counter(
            "serving_cache_lookups", "Cache lookups by level (memory, redis): hit, miss, error, "
            "bypass", ["level", "result"], registry=r,
        )
        self.breaker_open = Gauge(
            "serving_redis_breaker_open", "1 while the Redis circuit breaker is open", registry=r
        )
        self.model_info = Gauge(
            "serving_model_info", "Loaded model per variant (value 1)",
            ["variant", "name", "version"], registry=r,
        )
        self.model_reloads = Counter(
            "serving_model_reloads", "Model swaps and failed loads", ["variant", "result"],
            registry=r,
        )
        self.batch_size = Histogram(
            "serving_microbatch_windows", "Windows per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), registry=r,
        )
        self.log_rows = Counter(
            "serving_prediction_log_rows", "Prediction log rows: written, dropped, spilled",
            ["result"], registry=r,
        )
        self.log_queue = Gauge(
            "serving_prediction_log_queue", "Rows waiting for the log writer", registry=r
        )
        self.batch_jobs = Counter(
            "serving_batch_jobs", "Batch CSV jobs by final status", ["status"], registry=r
        )
        self.batch_windows = Counter(
            "serving_batch_windows", "Agent-windows scored by batch jobs", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
