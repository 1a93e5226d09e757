"""Service health: request rate, latency quantiles, cache hit rate, errors, log queue, readiness.

From Prometheus when DASHBOARD_PROMETHEUS_URL is set (5-minute rates over every replica it
scrapes); otherwise from each replica's `/metrics`, with rates taken between this process's
consecutive scrapes (the first scrape shows totals since the replica started). Readiness always
comes from each replica's `/ready`. A replica that does not answer is shown as down, never
dropped.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 3.0
PROMQL = {
    "request_rate": "sum(rate(serving_requests_total[5m]))",
    "p50_ms": "1000 * histogram_quantile(0.5, sum by (le) "
              "(rate(serving_request_latency_seconds_bucket[5m])))",
    "p99_ms": "1000 * histogram_quantile(0.99, sum by (le) "
              "(rate(serving_request_latency_seconds_bucket[5m])))",
    "cache_hit_rate": 'sum(rate(serving_cache_lookups_total{result="hit"}[5m])) / '
                      'sum(rate(serving_cache_lookups_total{result=~"hit|miss"}[5m]))',
    "rate_4xx": 'sum(rate(serving_requests_total{status=~"4.."}[5m]))',
    "rate_5xx": 'sum(rate(serving_requests_total{status=~"5.."}[5m]))',
    "log_queue": "sum(serving_prediction_log_queue)",
}


@dataclass
class Totals:
    """Counters and histogram of one scrape (sums over labels)."""

    at: float
    requests: float = 0.0
    r4xx: float = 0.0
    r5xx: float = 0.0
    hits: float = 0.0
    misses: float = 0.0
    queue: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count


def parse_metrics(text: str, at: float) -> Totals:
    """The numbers the System page needs from one Prometheus text exposition."""
    out = Totals(at=at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "serving_requests_total":
                out.requests += s.value
                status = str(s.labels.get("status", ""))
                out.r4xx += s.value if status.startswith("4") else 0.0
                out.r5xx += s.value if status.startswith("5") else 0.0
            elif s.name == "serving_cache_lookups_total":
                result = s.labels.get("result")
                out.hits += s.value if result == "hit" else 0.0
                out.misses += s.value if result == "miss" else 0.0
            elif s.name == "serving_prediction_log_queue":
                out.queue += s.value
            elif s.name == "serving_request_latency_seconds_bucket":
                le = float(s.labels["le"])
                out.buckets[le] = out.buckets.get(le, 0.0) + s.value
    return out


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding q."""
    if not buckets:
        return None
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, count
    return lower


def summarize(now: Totals, before: Totals | None) -> dict[str, float | None]:
    """Rates between two scrapes of the summed replicas (totals when there is no earlier one)."""
    span = (now.at - before.at) if before is not None else None
    prev = before or Totals(at=now.at)

    def delta(name: str) -> float:
        return max(getattr(now, name) - getattr(prev, name), 0.0)

    per = span if span and span > 0 else None
    buckets = {le: max(c - prev.buckets.get(le, 0.0), 0.0) for le, c in now.buckets.items()}
    looked = delta("hits") + delta("misses")
    p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
    return {
        "request_rate": delta("requests") / per if per else None,
        "requests": delta("requests"),
        "p50_ms": p50 * 1000 if p50 is not None else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
        "cache_hit_rate": delta("hits") / looked if looked else None,
        "rate_4xx": delta("r4xx") / per if per else None,
        "rate_5xx": delta("r5xx") / per if per else None,
        "count_4xx": delta("r4xx"),
        "count_5xx": delta("r5xx"),
        "log_queue": now.queue,
    }


def add(parts: list[Totals], at: float) -> Totals:
    """Replicas summed into one Totals."""
    out = Totals(at=at)
    for part in parts:
        for name in ("requests", "r4xx", "r5xx", "hits", "misses", "queue"):
            setattr(out, name, getattr(out, name) + getattr(part, name))
        for le, c in part.buckets.items():
            out.buckets[le] = out.buckets.get(le, 0.0) + c
    return out


class SystemMonitor:
    """Scrapes the replicas (or asks Prometheus) and keeps a short history for the charts."""

    def __init__(self, replicas: dict[str, str], prometheus_url: str | None = None,
                 history: int = 360) -> None:
        self.replicas = replicas
        self.prometheus_url = prometheus_url
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self._last: Totals | None = None

    def sample(self) -> dict[str, Any]:
        """One reading: the numbers, each replica's readiness, and the source used."""
        at = time.time()
        with httpx.Client(timeout=TIMEOUT_S) as client:
            ready = {name: _ready(client, url) for name, url in self.replicas.items()}
            if self.prometheus_url:
                numbers, source = _prometheus(client, self.prometheus_url), "prometheus"
            else:
                scraped = [t for t in (_scrape(client, url, at) for url in self.replicas.values())
                           if t is not None]
                now = add(scraped, at)
                numbers, source = summarize(now, self._last), "replicas"
                self._last = now
        reading = {"at": at, "numbers": numbers, "ready": ready, "source": source}
        self.history.append(reading)
        return reading


def _ready(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        response = client.get(f"{url.rstrip('/')}/ready")
        body = response.json()
    except (httpx.HTTPError, ValueError) as err:
        return {"status": "down", "detail": type(err).__name__, "degraded": []}
    return {"status": str(body.get("status", response.status_code)),
            "degraded": list(body.get("degraded", [])), "detail": ""}


def _scrape(client: httpx.Client, url: str, at: float) -> Totals | None:
    try:
        response = client.get(f"{url.rstrip('/')}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse_metrics(response.text, at)


def _prometheus(client: httpx.Client, base: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, query in PROMQL.items():
        try:
            body = client.get(f"{base.rstrip('/')}/api/v1/query", params={"query": query}).json()
            result = body["data"]["result"]
            value = float(result[0]["value"][1]) if result else None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            value = None
        out[name] = value if value is None or math.isfinite(value) else None
    return out
