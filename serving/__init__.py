"""The HTTP prediction service and batch scoring, on top of `trajectory`.

    main.py           create_app(settings) and its lifespan (models, cache, database, tasks)
    config.py         ServingSettings (env prefix SERVING_)
    deps.py           FastAPI dependencies: state, API-key roles
    schemas.py        request and response bodies
    errors.py         serving errors and the one exception -> HTTP status mapping
    middleware.py     request ids, body limits (413), per-route metrics
    routing.py        A/B assignment by stable hash
    registry.py       model sources (MLflow registry, builtin) and the loaded variants
    reloader.py       start-up loading and alias polling (hot reload)
    inference.py      request -> model inputs through the shared make_windows
    batcher.py        dynamic micro-batching of concurrent requests
    prediction.py     one real-time prediction: route, cache, predict, log, shadow
    cache.py          Redis (circuit breaker) or in-process LRU
    db.py             SQL tables and schema versioning
    predictions_log.py  background batch writer of the prediction log
    quarantine.py     bisecting a refused batch: good rows written, bad rows quarantined
    spills.py         spill files written at shutdown, replayed exactly once
    audit.py          the admin audit trail (after validation, with outcome)
    batch.py          score_csv: the one batch scoring function (API, CLI, DAG)
    batch_tasks.py    its tasks (parse a chunk, score a partition), run where cluster.py says
    cluster.py        a Dask client / scheduler address / LocalCluster, or this process
    partitions.py     partitions by scene and time that own each window exactly once
    engine.py         the inference engine (one per model version) of batch and real-time
    chunks.py, windowing.py  bounded-memory reading and windowing for batch scoring
    jobs.py           batch jobs of the API (state in the database: any replica answers)
    job_store.py      the batch_jobs table's queries
    routes/           HTTP routes
    cli.py            `trajectory serve`, `trajectory score` and `trajectory replay-log`
"""
