"""System: request rate, p50/p99 latency, cache hit rate, 4xx/5xx, prediction-log queue and
readiness of each replica, refreshed every `INTERVAL_S` (see `dashboard.system`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html
from plotly.subplots import make_subplots

from dashboard.system import SystemMonitor

INTERVAL_S = 10
CARDS = (("request_rate", "requests/s", ".2f"), ("p50_ms", "p50 latency (ms)", ".1f"),
         ("p99_ms", "p99 latency (ms)", ".1f"), ("cache_hit_rate", "cache hit rate", ".0%"),
         ("rate_4xx", "4xx/s", ".2f"), ("rate_5xx", "5xx/s", ".2f"),
         ("log_queue", "prediction-log queue", ".0f"))


def _fmt(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) else "-"


def cards(reading: dict[str, Any]) -> list[html.Div]:
    numbers = reading["numbers"]
    out = [html.Div([html.Div(label, className="card-label"),
                      html.Div(_fmt(numbers.get(key), fmt), id=f"sys-{key}",
                               className="card-value")], className="card")
           for key, label, fmt in CARDS]
    if reading["source"] == "replicas" and numbers.get("request_rate") is None:
        out.append(html.Div(f"first scrape: {numbers.get('requests', 0):.0f} requests, "
                            f"{numbers.get('count_4xx', 0):.0f} 4xx, "
                            f"{numbers.get('count_5xx', 0):.0f} 5xx since the replicas started; "
                            "rates from the next scrape", className="card-note"))
    return out


def readiness(reading: dict[str, Any]) -> html.Table:
    rows = [html.Tr([html.Td(name), html.Td(r["status"], id=f"ready-{name}",
                                            className=f"status-{r['status']}"),
                     html.Td(", ".join(r["degraded"]) or r["detail"] or "-")])
            for name, r in reading["ready"].items()]
    head = html.Tr([html.Th(h) for h in ("replica", "readiness", "degraded parts")])
    return html.Table([html.Thead(head), html.Tbody(rows)], id="readiness", className="grid")


def history_figure(history: list[dict[str, Any]]) -> go.Figure:
    frame = pd.DataFrame([{"time": pd.Timestamp(h["at"], unit="s", tz="UTC"), **h["numbers"]}
                          for h in history])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("requests/s", "latency (ms)"))
    if len(frame):
        fig.add_trace(go.Scatter(x=frame["time"], y=frame["request_rate"], name="requests/s",
                                 mode="lines+markers"), row=1, col=1)
        for key in ("p50_ms", "p99_ms"):
            fig.add_trace(go.Scatter(x=frame["time"], y=frame[key], name=key.split("_")[0],
                                     mode="lines+markers"), row=1, col=2)
    fig.update_layout(height=300, margin={"l": 50, "r": 20, "t": 40, "b": 30})
    return fig


def layout(monitor: SystemMonitor) -> html.Div:
    source = "Prometheus" if monitor.prometheus_url else "each replica's /metrics"
    return html.Div([
        html.H2("System"),
        html.P(f"from {source}; readiness from each replica's /ready; every {INTERVAL_S} s"),
        dcc.Interval(id="system-tick", interval=INTERVAL_S * 1000, n_intervals=0),
        html.Div(id="system-cards", className="cards"),
        html.Div(id="system-ready"),
        dcc.Graph(id="system-history", config={"displaylogo": False}),
    ])


def register(app: Dash, monitor: SystemMonitor) -> None:
    @app.callback(Output("system-cards", "children"), Output("system-ready", "children"),
                  Output("system-history", "figure"), Input("system-tick", "n_intervals"))
    def tick(_: int) -> tuple[list[html.Div], html.Table, go.Figure]:
        reading = monitor.sample()
        return cards(reading), readiness(reading), history_figure(list(monitor.history))
