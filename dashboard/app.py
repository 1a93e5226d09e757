"""The Dash app: a navigation bar, four pages by URL path, the login and report routes.

Dash serves its own JavaScript and CSS from the installed package (`serve_locally`), so the
dashboard works with no internet access and no CDN; the page style is inlined below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, dcc, html
from flask import Response, abort, send_file

from dashboard.auth import install_auth
from dashboard.decisions import report_path
from dashboard.pages import fairness, forecasts, overview, system
from dashboard.settings import DashboardSettings, load_dashboard_settings
from dashboard.store import Store
from dashboard.system import SystemMonitor

PAGES = (("/", "Overview"), ("/forecasts", "Forecasts"), ("/fairness", "Performance & fairness"),
         ("/system", "System"))

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
nav{background:#1f2a44;padding:.6rem 1rem}nav a{color:#fff;margin-right:1.2rem;
text-decoration:none}nav a.here{font-weight:bold;text-decoration:underline}
nav span{color:#aab;float:right}main{padding:0 1.5rem 2rem}
table.grid{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
table.grid td,table.grid th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;
vertical-align:top}table.grid ul{margin:0;padding-left:1rem}
tr.flagged td{background:#fde4e4}.row{display:flex;gap:1rem}.half{flex:1;min-width:0}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:.6rem 0}.card{border:1px solid #ddd;
border-radius:6px;padding:.5rem .8rem;min-width:9rem}.card-label{font-size:.8rem;color:#666}
.card-value{font-size:1.4rem}.card-note{font-size:.8rem;color:#666;align-self:center}
.status-ready{color:#2ca02c}.status-degraded{color:#ff7f0e}.status-down,.status-not_ready{
color:#d62728}.control{max-width:28rem}
"""
_INDEX = """<!DOCTYPE html><html lang="en"><head>{%metas%}<title>{%title%}</title>{%favicon%}
{%css%}<style>""" + _STYLE + """</style></head><body>{%app_entry%}<footer>{%config%}{%scripts%}
{%renderer%}</footer></body></html>"""


def create_app(settings: DashboardSettings | None = None) -> Dash:
    """A new dashboard; settings from the environment unless given."""
    settings = settings or load_dashboard_settings()
    store = Store(settings)
    monitor = SystemMonitor(settings.replicas, settings.prometheus_url)
    app = Dash(__name__, title="Trajectory dashboard", serve_locally=True,
               suppress_callback_exceptions=True, update_title="")
    app.index_string = _INDEX
    install_auth(app.server, settings)

    @app.server.route("/reports/<folder>/drift.html")
    def report(folder: str) -> Response:
        path = report_path(settings.work_dir, folder)
        if path is None:
            abort(404)
        return send_file(path.resolve(), mimetype="text/html")

    pages: dict[str, Callable[[], Any]] = {
        "/": lambda: overview.layout(store),
        "/forecasts": lambda: forecasts.layout(store),
        "/fairness": lambda: fairness.layout(store),
        "/system": lambda: system.layout(monitor),
    }
    app.layout = html.Div([
        dcc.Location(id="url"),
        html.Nav(id="nav"),
        html.Main(id="page"),
    ])

    @app.callback(Output("nav", "children"), Output("page", "children"),
                  Input("url", "pathname"))
    def route(path: str | None) -> tuple[list[Any], Any]:
        path = path or "/"
        links: list[Any] = [dcc.Link(label, href=href, className="here" if href == path else "",
                          id=f"nav-{label.split()[0].lower()}") for href, label in PAGES]
        links.append(html.Span(html.A("sign out", href="/logout", style={"color": "#aab"})))
        page = pages.get(path)
        return links, page() if page else html.Div([html.H2("Not found"), html.P(path)])

    forecasts.register(app, store)
    system.register(app, monitor)
    return app
