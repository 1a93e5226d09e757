"""Monitoring of the served models: live ADE/FDE, A/B statistics, feature drift, decisions.

    settings.py    MonitoringSettings (env prefix TRAJ_MONITOR_): methods and thresholds
    sequential.py  always-valid A/B test on per-key ratio means (paired, CUPED, unpaired)
    experiment.py  experiments (weights, versions, start) in the serving DB; estimates from rows
    ab.py          per-key aggregation, descriptive tests, sample-ratio and join-rate checks
    drift.py       Evidently data-drift report over motion features (HTML + JSON)
    drift_rule.py  drift decision: thresholds calibrated on time-ordered A/A training samples
    live.py        the prediction log joined to later ground truth -> ADE/FDE (and CV's ADE)
    live_rule.py   live ADE / CV ADE vs validation, cluster-bootstrap interval
    evidence.py    log frames -> the rules' inputs; earlier decisions for persistence
    truth.py       ground-truth tracks of logged scenes from the ETL output
    decision.py    retrain / promote / rollback policy as pure functions, recorded as JSON
    job.py         one evaluation run over a log window: what the `trajectory_evaluate` DAG calls

`sequential`, `drift_rule`, `live_rule`, `ab`, `decision` and the joins of `live` are pure
functions of what they are given; I/O is in `live.read_prediction_log` (the log),
`experiment.current_experiment` (the experiments table), `drift.drift_report` (writes HTML/JSON)
and `job`. Error rates of the rules: benchmarks/monitoring_sim.py -> benchmarks/monitoring.json.
"""
