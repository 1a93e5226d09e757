"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

# Strict: a JSON string or boolean is never read as a number ("7" and true are refused).
# Per field rather than `ConfigDict(strict=True)`, which would also refuse a JSON array for a
# point when FastAPI validates a parsed body (admin cache warming).
FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Point = tuple[FiniteFloat, FiniteFloat]
StrictInt = Annotated[int, Strict()]
Int64 = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]


class AgentTrack(BaseModel):
    """One agent's observed positions, oldest first, one per frame step (or at `timestamps`)."""

    model_config = ConfigDict(extra="forbid")

    agent_id: Int64
    points: list[Point] = Field(min_length=2, description="[[x, y], ...] in metres")
    last_frame: Int64 | None = Field(
        None, description="frame of the last point (default: the request's `frame`)"
    )
    timestamps: list[FiniteFloat] | None = Field(
        None,
        description="seconds of each point, increasing, on a clock shared by the request's "
        "agents (give them for every agent or for none; not with `dt`): the points are "
        "resampled to the model's time step, and frames are not used",
    )


class PredictRequest(BaseModel):
    """Agents observed together: each is the others' neighbour at matching frames.

    Time step: points are taken to be the model's time step apart (the response's `dt`;
    0.4 s for ETH/UCY models) unless the request says otherwise with `dt` (seconds between
    consecutive points) or per-point `timestamps`. Points at another step are resampled to
    the model's by linear interpolation, never across a gap longer than the model's
    `max_gap`; each agent then needs points covering (obs_len - 1) * dt seconds, else the
    answer is 422 naming the field and the mismatch. Forecasts are always at the model's dt.
    """

    model_config = ConfigDict(extra="forbid")

    agents: list[AgentTrack] = Field(min_length=1)
    scene: str | None = Field(None, max_length=200)
    frame: Int64 | None = Field(None, description="frame of every agent's last point")
    frame_step: StrictInt = Field(1, ge=1, le=1_000_000, description="frame numbers per point")
    dt: FiniteFloat | None = Field(
        None,
        gt=0,
        le=3600,
        description="seconds between consecutive points (default: the model's time step); "
        "points at another step are resampled to the model's",
    )
    k: StrictInt = Field(1, ge=1, description="samples per agent")
    routing_key: str | None = Field(None, max_length=200)
    variant: str | None = Field(
        None, max_length=64, description="force a variant (tests, QA): needs an admin key"
    )


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the field, e.g. agents.0.points.1; body")
    reason: str


class ErrorBody(BaseModel):
    """Every error response: 4xx and 5xx alike, never a traceback."""

    error: str = Field(description="the kind of error, e.g. RequestError, AuthError")
    detail: str | list[FieldError] = Field(description="a message, or the invalid fields (422)")
    request_id: str | None = Field(description="also in the X-Request-Id header")


class ModelRef(BaseModel):
    name: str
    version: str


class AgentPrediction(BaseModel):
    agent_id: int
    points: list[list[float]] = Field(description="(T_pred, 2): the most likely future")
    samples: list[list[list[float]]] | None = Field(None, description="(K, T_pred, 2) if K > 1")
    weights: list[float] | None = Field(None, description="(K,) if K > 1, best first")


class PredictResponse(BaseModel):
    request_id: str
    variant: str
    model: ModelRef
    cached: bool
    k: int
    dt: float = Field(
        description="seconds between forecast points, the model's time step: point j of a "
        "forecast is (j + 1) * dt after the agent's last observed point"
    )
    predictions: list[AgentPrediction]


class VariantInfo(BaseModel):
    variant: str
    uri: str
    weight: float
    shadow: bool
    loaded: bool
    model: dict[str, object] | None
    error: str | None


class ReadyResponse(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    degraded: list[str] = Field(description="parts not working: cache, database, registry...")
    models: dict[str, dict[str, object]]
    cache: dict[str, object]
    database: dict[str, object]
    registry: dict[str, object]


class ModelsResponse(BaseModel):
    default_variant: str
    variants: list[VariantInfo]


class WeightsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, FiniteFloat] = Field(description="variant -> share, summing to 1")


class ReloadResponse(BaseModel):
    outcome: dict[str, str]


class LineError(BaseModel):
    line: int
    reason: str


class BatchProgress(BaseModel):
    bytes_read: int = 0
    bytes_total: int = 0
    rows: int = 0
    rows_rejected: int = 0
    windows: int = 0

    @property
    def fraction(self) -> float:
        return self.bytes_read / self.bytes_total if self.bytes_total else 0.0


class BatchJobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    created_at: float
    finished_at: float | None = None
    fraction: float = 0.0
    progress: BatchProgress
    model: ModelRef | None = None
    errors: list[LineError] = []
    errors_truncated: bool = False
    detail: str | None = None
    result_url: str | None = None
