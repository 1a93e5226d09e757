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
    batch.py          score_csv: the one batch scoring function (API, CLI, DAG)
    chunks.py, windowing.py  bounded-memory reading and windowing for batch scoring
    jobs.py           batch jobs of the API
    routes/           HTTP routes
    cli.py            `trajectory serve` and `trajectory score`
"""
