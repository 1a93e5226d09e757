"""The whole HTTP contract, property-based: schemathesis generates requests from the OpenAPI
document (examples, coverage and fuzzing phases) and runs every check on each response: no
5xx, status codes, content types, bodies and headers as declared, invalid data rejected,
undeclared methods answered 405 with Allow, missing required headers rejected.

The engine is driven directly rather than through `schema.parametrize()`: its lazy pytest
loader (`schemathesis.pytest.from_fixture`) does not run under pytest 9, and a module-level
schema would build the app at import.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi
from serving_testkit import ADMIN, FakeRegistry, make_settings

from serving.main import create_app

CONFIG = {
    "seed": 20240601,
    "headers": ADMIN,  # every route, admin ones included, is reached past its key check
    "generation": {"max-examples": 30},
    "phases": {"stateful": {"enabled": False}},
    # 422 also answers schema-valid requests that break what a JSON Schema cannot say or what
    # depends on settings: limits, coordinate bounds, duplicate agent ids, the time covered by
    # the points, A/B weights summing to 1
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
        }
    },
}


@dataclass
class Run:
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    operations: set[str] = field(default_factory=set)
    cases: int = 0


def run_engine(schema: schemathesis.BaseSchema) -> Run:
    """Every phase of the engine; failed checks counted by operation and check name."""
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            run.operations.add(recorder.label)
            run.cases += len(recorder.cases)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    run.failures[f"{recorder.label}: {check.name}"] += 1
                    if len(run.examples) < 12:
                        case = recorder.cases[case_id].value
                        run.examples.append(f"{check.failure_info.failure}\n{case.method} "
                                            f"{case.formatted_path} {case.body!r}")
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            run.errors.append(repr(event.exception))
    return run


@pytest.mark.slow  # about 15 s on two cores
def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), model_source=FakeRegistry())
    config = schemathesis.Config.from_dict(CONFIG)
    # the upload reads a raw CSV stream, which the document does not describe as a body
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config).exclude(
        method="POST", path="/v1/batch"
    )
    start = time.perf_counter()
    try:
        run = run_engine(schema)
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan, which the engine started
    assert not run.errors, run.errors
    assert not run.failures, "\n".join([str(dict(run.failures)), *run.examples])
    assert len(run.operations) >= 9 and run.cases >= 300, (sorted(run.operations), run.cases)
    assert time.perf_counter() - start < 90
