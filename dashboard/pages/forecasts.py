"""Forecasts: one scene over a time range: observed tracks, the K predicted futures (opacity
by weight) and, where later requests have observed it, the true future; errors on hover."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from dashboard import logdata
from dashboard.store import Store, shorten

MAX_AGENTS = 12  # the newest forecast of at most this many agents is drawn
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def scene_options(rows: pd.DataFrame) -> list[dict[str, str]]:
    """Scenes by forecasts logged, most first; labelled by shortened pseudonym only."""
    counts = rows.dropna(subset=["scene_key"]).groupby("scene_key").size()
    counts = counts.sort_values(ascending=False, kind="stable")
    return [{"label": f"scene {shorten(k)} ({n} forecasts)", "value": str(k)}
            for k, n in counts.items()]


def pick(rows: pd.DataFrame, scene: str | None, start: float | None, end: float | None,
         limit: int = MAX_AGENTS) -> pd.DataFrame:
    """Per agent of `scene` between two epoch seconds, its newest served (not shadow) forecast
    whose whole future has been observed, else its newest; the `limit` newest agents."""
    part = rows[(rows["scene_key"] == scene) & ~rows["shadow"].astype(bool)]
    seconds = part["created_at"].astype("int64") / 1e9
    keep = np.ones(len(part), bool)
    if start is not None:
        keep &= (seconds >= start).to_numpy()
    if end is not None:
        keep &= (seconds <= end).to_numpy()
    part = part[keep]
    if part.empty:
        return part
    truth = logdata.true_futures(part, logdata.observed_points(rows))
    complete = np.array([not np.isnan(t).any() for t in truth])
    chosen = part.assign(_complete=complete).sort_values(["_complete", "id"], kind="stable")
    newest = chosen.drop_duplicates("agent_key", keep="last").sort_values("id")
    return newest.drop(columns="_complete").tail(limit)


def forecast_figure(rows: pd.DataFrame, chosen: pd.DataFrame) -> go.Figure:
    """The chosen forecasts; truth from every row of the log (later requests)."""
    fig = go.Figure()
    if chosen.empty:
        fig.update_layout(title="no forecasts in this scene and time range", height=560)
        return fig
    truth = logdata.true_futures(chosen, logdata.observed_points(rows))
    for i, (row, future) in enumerate(zip(chosen.itertuples(), truth, strict=True)):
        colour = COLOURS[i % len(COLOURS)]
        agent = shorten(row.agent_key)
        obs = np.asarray(row.observed, float).reshape(-1, 2)
        pred = np.asarray(row.predicted, float)  # (K, T, 2)
        weights = np.asarray(row.weights, float) if row.weights else np.ones(len(pred))
        label = f"agent {agent} · {row.variant} v{row.model_version}"
        arrived = ~np.isnan(future).any(axis=1)
        if arrived.all():
            err = np.linalg.norm(pred[0] - future, axis=-1)
            label += f"<br>ADE {err.mean():.2f} m · FDE {err[-1]:.2f} m"
        elif arrived.any():
            label += f"<br>{arrived.sum()} of {len(future)} future points observed so far"
        else:
            label += "<br>future not observed yet"
        fig.add_trace(go.Scatter(x=obs[:, 0], y=obs[:, 1], mode="lines+markers",
                                 line={"color": colour, "width": 2}, marker={"size": 4},
                                 name=f"agent {agent}", legendgroup=agent, meta=f"obs:{agent}",
                                 hovertemplate=label + "<extra>observed</extra>"))
        top = weights.max() if weights.size and weights.max() > 0 else 1.0
        for k, (mode, w) in enumerate(zip(pred, weights, strict=True)):
            path = np.vstack([obs[-1:], mode])
            fig.add_trace(go.Scatter(
                x=path[:, 0], y=path[:, 1], mode="lines", line={"color": colour, "width": 2},
                opacity=float(0.15 + 0.85 * w / top), legendgroup=agent, showlegend=False,
                meta=f"pred:{agent}:{k}",
                hovertemplate=label + f"<br>mode {k + 1}, weight {w:.2f}<extra>predicted</extra>"))
        if arrived.any():
            seen = np.vstack([obs[-1:], np.where(arrived[:, None], future, np.nan)])
            fig.add_trace(go.Scatter(x=seen[:, 0], y=seen[:, 1], mode="lines",
                                     line={"color": "black", "width": 1.5, "dash": "dash"},
                                     legendgroup=agent, showlegend=False, meta=f"true:{agent}",
                                     hovertemplate=label + "<extra>true future</extra>"))
    fig.update_layout(height=560, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      title="observed (solid), predicted modes (opacity = weight), true "
                            "future (dashed)",
                      xaxis={"title": "x (m)"}, yaxis={"title": "y (m)", "scaleanchor": "x"})
    return fig


def layout(store: Store) -> html.Div:
    view = store.view()
    options = scene_options(view.rows)
    if not options:
        return html.Div([html.H2("Forecasts"), html.P(view.note or "no scene in the log")])
    seconds = view.rows["created_at"].astype("int64") / 1e9
    low, high = float(np.floor(seconds.min())), float(np.ceil(seconds.max()))
    marks = {float(t): pd.Timestamp(t, unit="s", tz="UTC").strftime("%m-%d %H:%M")
             for t in np.linspace(low, high, 5)}
    return html.Div([
        html.H2("Forecasts"),
        html.Div([
            html.Label("scene", htmlFor="scene"),
            dcc.Dropdown(id="scene", options=options, value=options[0]["value"],
                         clearable=False),
        ], className="control"),
        html.Label("time range (UTC)"),
        dcc.RangeSlider(id="time-range", min=low, max=high, value=[low, high], marks=marks,
                        step=60, allowCross=False, allow_direct_input=False),
        dcc.Graph(id="forecast-plot", config={"displaylogo": False}),
        html.P(id="forecast-note"),
    ])


def register(app: Dash, store: Store) -> None:
    @app.callback(Output("forecast-plot", "figure"), Output("forecast-note", "children"),
                  Input("scene", "value"), Input("time-range", "value"))
    def draw(scene: str | None, span: list[float] | None) -> tuple[go.Figure, str]:
        rows = store.view().rows
        start, end = (span[0], span[1]) if span else (None, None)
        chosen = pick(rows, scene, start, end)
        note = (f"scene {shorten(scene)}: newest forecast of {len(chosen)} agents "
                f"(at most {MAX_AGENTS}) in the range")
        return forecast_figure(rows, chosen), note
