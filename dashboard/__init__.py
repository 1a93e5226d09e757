"""The operator dashboard (Dash/Plotly): overview, forecasts, fairness card and system health.

`trajectory dashboard --port N` runs it; `create_app(settings)` builds it (nothing at import).
It reads the prediction log, the evaluation job's decision folders and the replicas' metrics;
it writes nothing.
"""
