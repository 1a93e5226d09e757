"""The `trajectory dashboard` command (attached to the main typer app like `serve`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def dashboard(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8050,
    threads: Annotated[int, typer.Option(help="Request threads.", min=1)] = 4,
) -> None:
    """Run the operator dashboard (settings from DASHBOARD_*, SERVING_* and TRAJ_* variables;
    embedded defaults read artifacts/serving.db and artifacts/monitoring). Sign in with an
    admin API key of the service or a DASHBOARD_VIEWER_KEYS key."""
    from dashboard.app import create_app
    from dashboard.settings import load_dashboard_settings

    server = create_app(load_dashboard_settings()).server
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:  # the development server of Flask still serves every page
        server.run(host=host, port=port, threaded=True)
        return

    class _Gunicorn(BaseApplication):
        """One worker (the session key and the metrics history live in it), `threads`
        threads."""

        def load_config(self) -> None:
            for key, value in {"bind": f"{host}:{port}", "workers": 1, "threads": threads,
                               "worker_class": "gthread", "accesslog": "-",
                               "timeout": 60}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return server

    _Gunicorn().run()
