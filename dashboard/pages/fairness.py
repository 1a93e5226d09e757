"""Performance and fairness card: live ADE by scene, crowd density, walking speed, path
curvature, time of day and variant (`trajectory.fairness`, as in the model card's bias
section), with the windows behind each cell and the groups flagged above the overall."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html
from plotly.subplots import make_subplots

from dashboard.store import Store, shorten
from trajectory import fairness

TITLES = {fairness.SCENE: "scene", fairness.CROWD: "crowd density (neighbours within radius)",
          fairness.SPEED: "walking speed (m/s)", fairness.CURVE: "path curvature",
          fairness.TIME: "time of day (UTC)", fairness.VARIANT: "variant"}


def live_table(errors: pd.DataFrame, flag_share: float, min_windows: int) -> pd.DataFrame:
    """The fairness table of the scored forecasts; scenes by shortened pseudonym."""
    frame = fairness.add_bands(errors).assign(scene=errors["scene_key"].map(shorten))
    return fairness.slice_errors(frame, flag_share=flag_share, min_windows=min_windows)


def slices_figure(table: pd.DataFrame, flag_share: float) -> go.Figure:
    names = [s for s in fairness.SLICES if s in set(table["slice"])]
    fig = make_subplots(rows=max(len(names), 1), cols=1, vertical_spacing=0.07,
                        subplot_titles=[TITLES[s] for s in names])
    overall = float(table.iloc[0]["ade"]) if len(table) else 0.0
    for i, name in enumerate(names, start=1):
        part = table[table["slice"] == name]
        colours = ["#d62728" if f else ("#1f77b4" if j else "#aaaaaa")
                   for f, j in zip(part["flagged"], part["judged"], strict=True)]
        fig.add_trace(go.Bar(
            y=part["group"], x=part["ade"], orientation="h", marker={"color": colours},
            text=[f"{a:.2f} m · n={n}" for a, n in zip(part["ade"], part["windows"], strict=True)],
            textposition="auto", meta=f"slice:{name}", showlegend=False,
            hovertemplate="%{y}: ADE %{x:.3f} m<extra></extra>"), row=i, col=1)
        fig.add_vline(x=overall, line={"dash": "dot", "color": "black"}, row=i, col=1)
        fig.add_vline(x=overall * (1 + flag_share), line={"dash": "dash", "color": "#d62728"},
                      row=i, col=1)
    fig.update_layout(height=170 * max(len(names), 1) + 60, bargap=0.25,
                      margin={"l": 130, "r": 20, "t": 40, "b": 30})
    return fig


def layout(store: Store) -> html.Div:
    view, settings = store.view(), store.settings
    if view.errors.empty:
        return html.Div([html.H2("Performance and fairness"),
                         html.P(view.note or "no forecast has its whole future observed yet")])
    table = live_table(view.errors, settings.flag_share, settings.min_windows)
    rows = [html.Tr([
        html.Td(r["slice"]), html.Td(r["group"]), html.Td(r["windows"]),
        html.Td(f"{r['ade']:.3f}"), html.Td(f"{r['fde']:.3f}"), html.Td(f"{r['ratio']:.2f}"),
        html.Td("FLAGGED" if r["flagged"] else ("" if r["judged"] else "too few windows")),
    ], className="flagged" if r["flagged"] else "") for r in table.to_dict("records")]
    head = html.Tr([html.Th(h) for h in ("slice", "group", "windows", "ADE (m)", "FDE (m)",
                                         "ratio to overall", "")])
    flagged = fairness.flagged(table)
    return html.Div([
        html.H2("Performance and fairness"),
        html.P(f"{len(view.errors)} scored forecasts. A group is flagged when its ADE is more "
               f"than {settings.flag_share:.0%} above the overall and it holds at least "
               f"{settings.min_windows} windows (red bars, dashed line); grey bars have too "
               "few windows to judge.", id="fairness-note"),
        html.P(f"{len(flagged)} flagged group(s): " + (", ".join(
            f"{r.slice} {r.group} (+{r.ratio - 1:.0%})" for r in flagged.itertuples())
            or "none"), id="fairness-flags"),
        dcc.Graph(id="fairness-plot", figure=slices_figure(table, settings.flag_share),
                  config={"displaylogo": False}),
        html.Table([html.Thead(head), html.Tbody(rows)], id="fairness-table", className="grid"),
    ])
