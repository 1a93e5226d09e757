"""Overview: variants, live ADE/FDE per variant over time, the A/B verdict, drift, decisions."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html
from plotly.subplots import make_subplots

from dashboard import logdata
from dashboard.decisions import DecisionRecord, airflow_link, mlflow_link
from dashboard.settings import DashboardSettings
from dashboard.store import Store

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def variants_table(settings: DashboardSettings, rows: pd.DataFrame,
                   errors: pd.DataFrame) -> pd.DataFrame:
    """Per configured (or logged) variant: model, version, alias, A/B weight, live scores."""
    names = list(dict.fromkeys([*settings.variants, *rows.get("variant", pd.Series()).unique()]))
    out = []
    for name in names:
        uri = settings.variants.get(name, "")
        logged = rows[rows["variant"] == name]
        latest = logged.iloc[-1] if len(logged) else None
        scored = errors[errors["variant"] == name]
        alias = uri.rsplit("@", 1)[1] if "@" in uri else "-"
        out.append({
            "variant": name,
            "model": str(latest["model_name"]) if latest is not None else uri or "-",
            "version": str(latest["model_version"]) if latest is not None else "-",
            "alias": alias,
            "weight": settings.ab_weights.get(name, 1.0 if len(settings.variants) == 1 and
                                              name in settings.variants else 0.0),
            "forecasts": len(logged),
            "scored": len(scored),
            "ade": float(scored["ade"].mean()) if len(scored) else None,
            "fde": float(scored["fde"].mean()) if len(scored) else None,
        })
    return pd.DataFrame(out)


def error_figure(errors: pd.DataFrame) -> go.Figure:
    """ADE (top) and FDE (bottom) per variant over time, each with its 95% band."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("live ADE (m)", "live FDE (m)"))
    for row, metric in ((1, "ade"), (2, "fde")):
        table = logdata.error_over_time(errors, metric)
        for i, (variant, part) in enumerate(table.groupby("variant", sort=True)):
            colour = COLOURS[i % len(COLOURS)]
            fig.add_trace(go.Scatter(x=part["time"], y=part["high"], mode="lines",
                                     line={"width": 0}, showlegend=False, hoverinfo="skip",
                                     legendgroup=variant), row=row, col=1)
            fig.add_trace(go.Scatter(x=part["time"], y=part["low"], mode="lines",
                                     line={"width": 0}, fill="tonexty", showlegend=False,
                                     fillcolor=_rgba(colour, 0.2), hoverinfo="skip",
                                     legendgroup=variant), row=row, col=1)
            fig.add_trace(go.Scatter(
                x=part["time"], y=part["mean"], mode="lines+markers", name=f"{variant}",
                meta=f"{metric}:{variant}", line={"color": colour}, legendgroup=variant,
                showlegend=row == 1, customdata=part["windows"],
                hovertemplate=f"{variant} {metric.upper()} %{{y:.3f}} m<br>%{{customdata}} "
                              "windows<extra></extra>"), row=row, col=1)
    fig.update_layout(height=460, margin={"l": 50, "r": 20, "t": 40, "b": 30},
                      legend={"orientation": "h", "y": 1.12})
    return fig


def drift_figure(decisions: list[DecisionRecord]) -> go.Figure:
    """Share of features over their calibrated threshold per evaluation; red where the drift
    rule fired on that evaluation (retraining also needs it in consecutive evaluations)."""
    points = sorted((d.decided_at, d.drift_share, bool(d.drift_flagged)) for d in decisions
                    if d.drift_share is not None)
    fig = go.Figure(go.Scatter(
        x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
        name="drifted share", meta="drift", customdata=["flagged" if p[2] else "" for p in points],
        marker={"color": ["#d62728" if p[2] else "#1f77b4" for p in points], "size": 9},
        hovertemplate="%{y:.0%} of features drifted %{customdata}<extra></extra>"))
    fig.update_layout(height=260, margin={"l": 50, "r": 20, "t": 30, "b": 30},
                      title="drifted feature share (red: rule fired)",
                      yaxis={"range": [0, 1], "tickformat": ".0%"})
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, int | float) and not math.isnan(value) else "-"


DESIGNS = {
    "paired": "paired: shadow scores of both variants on the same requests",
    "cuped": "split by routing key, CUPED-adjusted by each key's pre-experiment error",
    "unpaired": "split by routing key (no pre-experiment errors to adjust by)",
}


def ab_verdict(decisions: list[DecisionRecord]) -> html.Div:
    """The newest decision's A/B test and balance checks, as recorded (either format)."""
    latest = next((d for d in decisions if d.ab or d.sample_ratio or d.join_balance), None)
    if latest is None:
        return html.Div("No A/B comparison recorded yet.", id="ab-verdict")
    ab = latest.ab or {}
    items: list[Any] = [html.Li(f"evaluation {latest.decided_at}")]
    if latest.experiment:
        items.append(_experiment_item(latest.experiment))
    if isinstance(ab.get("estimate"), dict):
        items += _sequential_items(ab, latest.policy)
    elif ab:
        items += _legacy_items(ab)
    if isinstance((latest.versions or {}).get("estimate"), dict):
        items.append(html.Li([html.B("rollback test (champion version vs the previous): "),
                              html.Span(_sequential_state(latest.versions or {}, "champion version"),
                                        id="rollback-state")]))
    for label, check, element_id, what in (
            ("sample ratio", latest.sample_ratio, "srm-state", "keys"),
            ("join balance", latest.join_balance, "join-state", "scored/logged")):
        if check:
            items.append(_balance_item(label, check, element_id, what))
    return html.Div([html.Ul(items)], id="ab-verdict")


def _experiment_item(experiment: dict[str, Any]) -> html.Li:
    versions = experiment.get("versions") or {}
    weights = experiment.get("weights") or {}
    detail = ", ".join(f"{v} v{versions.get(v, '?')} {_num(w, '.0%')}"
                       for v, w in weights.items()) if isinstance(weights, dict) else ""
    recorded = "" if experiment.get("recorded", True) else " (not recorded: no promotion)"
    return html.Li([html.B("experiment: "),
                    html.Span(str(experiment.get("id", "?"))[:12], id="ab-experiment"),
                    f" since {_time(experiment.get('started_at'))}{recorded}",
                    f"; {detail}" if detail else ""])


def _time(value: Any) -> str:
    """A recorded time (ISO or str(datetime)) to the minute, in UTC."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(ts):
        return "?"
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return f"{ts:%Y-%m-%d %H:%M} UTC"


def _sequential_state(test: dict[str, Any], b: str) -> str:
    """b better / b worse / not yet decided, as the test at this look allows."""
    keys, planned = test["estimate"].get("keys"), test.get("planned_keys")
    if test.get("b_better"):
        return f"{b} better"
    if test.get("b_worse"):
        return f"{b} worse"
    if isinstance(keys, int) and isinstance(planned, int) and keys < planned:
        return f"not yet decided (no decision before {planned} keys)"
    return "not yet decided"


def _sequential_items(ab: dict[str, Any], policy: dict[str, Any]) -> list[html.Li]:
    """The always-valid test: design, b - a with its interval, margin, keys vs planned."""
    est = ab["estimate"]
    a = str(policy.get("champion_variant", "champion"))
    b = str(policy.get("challenger_variant", "challenger"))
    metric = str(policy.get("ab_metric", "ade")).upper()
    found = ab.get("alpha")
    alpha = float(found) if isinstance(found, int | float) else 0.05
    design = str(est.get("design", "?"))
    keys, planned = est.get("keys"), ab.get("planned_keys")
    short = isinstance(keys, int) and isinstance(planned, int) and keys < planned
    return [
        html.Li([html.B("verdict: "), html.Span(_sequential_state(ab, b),
                                                id="ab-verdict-text")]),
        html.Li([html.B("design: "), html.Span(DESIGNS.get(design, design), id="ab-design")]),
        html.Li([f"effect {b} - {a} on {metric}: ",
                 html.Span(_num(est.get("diff"), "+.3f"), id="ab-diff"),
                 (f" m ({a} {_num(est.get('mean_a'))} m), always-valid {1 - alpha:.0%} "
                  "interval "),
                 html.Span(f"[{_num(ab.get('low'), '+.3f')}, {_num(ab.get('high'), '+.3f')}]",
                           id="ab-interval")]),
        html.Li(["minimum worthwhile improvement: ",
                 html.Span(_num(ab.get("margin")), id="ab-margin"),
                 (f" m ({b} better only when the interval lies below -margin; worse when it lies "
                  "above 0)")]),
        html.Li(["routing keys: ",
                 html.Span(f"{keys if keys is not None else '?'} of "
                           f"{planned if planned is not None else '?'} planned", id="ab-keys"),
                 f" ({est.get('windows', '?')} windows)",
                 "; the planned keys guard against deciding on an early fluke" if short else ""]),
    ]


def _legacy_items(ab: dict[str, Any]) -> list[html.Li]:
    """An older record's fixed-horizon comparison (Welch and Mann-Whitney at every look)."""
    significant = ab.get("significant")
    verdict = ("no significant difference" if not significant else
               f"{ab.get('b')} better" if (ab.get("diff") or 0) < 0 else f"{ab.get('b')} worse")
    return [
        html.Li([html.B("verdict: "), html.Span(verdict, id="ab-verdict-text"),
                 " (older record: fixed-horizon tests)"]),
        html.Li(f"{ab.get('metric', 'ade')}: {ab.get('a')} {_num(ab.get('mean_a'))} m vs "
                f"{ab.get('b')} {_num(ab.get('mean_b'))} m over {ab.get('n_a', '?')}+"
                f"{ab.get('n_b', '?')} routing keys"),
        html.Li(["effect (b - a): ", html.Span(_num(ab.get("diff"), "+.3f"), id="ab-diff"),
                 (f" m, {1 - float(ab.get('alpha', 0.05)):.0%} CI "
                  f"[{_num(ab.get('ci_low'), '+.3f')}, {_num(ab.get('ci_high'), '+.3f')}], "
                  f"Welch p {_num(ab.get('welch_p'), '.3g')}, Mann-Whitney p "
                  f"{_num(ab.get('mannwhitney_p'), '.3g')}")]),
    ]


def _balance_item(label: str, check: dict[str, Any], element_id: str, what: str) -> html.Li:
    state = "MISMATCH: do not act on the A/B result" if check.get("mismatch") else "ok"
    detail = (f" ({what} {check.get('counts')}, expected {_rounded(check.get('expected'))}, "
              f"p {_num(check.get('p_value'), '.3g')})")
    return html.Li([html.B(f"{label}: "), html.Span(state, id=element_id), detail])


def _rounded(values: Any) -> Any:
    return {k: round(v, 1) for k, v in values.items()} if isinstance(values, dict) else values


def decisions_table(decisions: list[DecisionRecord], settings: DashboardSettings) -> html.Table:
    head = html.Tr([html.Th(h) for h in ("decided", "what", "why", "evidence")])
    body = []
    for d in decisions[:10]:
        links: list[Any] = []
        if d.has_report:
            links.append(html.A("Evidently report", href=f"/reports/{d.folder}/drift.html",
                                target="_blank"))
        for label, url in (("MLflow run", mlflow_link(settings.mlflow_ui_url, d.run_id,
                                                      d.experiment_id)),
                           ("Airflow DAG run", airflow_link(settings.airflow_ui_url,
                                                            d.dag_run_id))):
            if url:
                links += [" · " if links else "", html.A(label, href=url, target="_blank")]
        body.append(html.Tr([
            html.Td(d.decided_at),
            html.Td(", ".join(d.kinds) or "nothing"),
            html.Td(html.Ul([html.Li(r) for r in d.reasons[:4]])),
            html.Td(links or "-"),
        ]))
    return html.Table([html.Thead(head), html.Tbody(body)], id="decisions", className="grid")


def layout(store: Store) -> html.Div:
    view, decisions, settings = store.view(), store.decisions(), store.settings
    table = variants_table(settings, view.rows, view.errors)
    header = html.Tr([html.Th(h) for h in ("variant", "model", "version", "alias", "A/B weight",
                                           "forecasts", "scored", "live ADE (m)",
                                           "live FDE (m)")])
    body = [html.Tr([
        html.Td(r["variant"]), html.Td(r["model"]), html.Td(r["version"]), html.Td(r["alias"]),
        html.Td(f"{r['weight']:.0%}"), html.Td(r["forecasts"]), html.Td(r["scored"]),
        html.Td(_num(r["ade"]), id=f"ade-{r['variant']}"),
        html.Td(_num(r["fde"]), id=f"fde-{r['variant']}"),
    ]) for r in table.to_dict("records")]
    span = (f"log {view.span[0]:%Y-%m-%d %H:%M} .. {view.span[1]:%Y-%m-%d %H:%M} UTC; "
            f"{len(view.rows)} forecasts read, {len(view.errors)} scored (their whole future "
            "was observed by later requests)") if view.span else view.note
    return html.Div([
        html.H2("Overview"),
        html.P(span, id="overview-span"),
        html.Table([html.Thead(header), html.Tbody(body)], id="variants", className="grid"),
        dcc.Graph(id="live-error", figure=error_figure(view.errors),
                  config={"displaylogo": False}),
        html.Div([
            html.Div([html.H3("A/B verdict"), ab_verdict(decisions)], className="half"),
            html.Div([dcc.Graph(id="drift-share", figure=drift_figure(decisions),
                                config={"displaylogo": False})], className="half"),
        ], className="row"),
        html.H3("Last decisions"),
        decisions_table(decisions, settings),
    ])
