"""Monitoring of the served models: live ADE/FDE, A/B statistics, feature drift, decisions.

    settings.py   MonitoringSettings (env prefix TRAJ_MONITOR_): methods and thresholds
    ab.py         per-key aggregation, Welch t / Mann-Whitney U, effect sizes, sample-ratio check
    drift.py      Evidently data-drift report over motion features (HTML + JSON)
    live.py       the prediction log joined to later ground truth -> ADE/FDE per variant/version
    decision.py   retrain / promote / rollback policy as pure functions, recorded as JSON
    job.py        one evaluation run over a log window: what the `trajectory_evaluate` DAG calls

`ab`, `decision` and the joins of `live` are pure functions of what they are given; I/O is in
`live.read_prediction_log` (the log), `drift.drift_report` (writes HTML/JSON) and `job`.
"""
