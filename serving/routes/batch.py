"""Batch CSV scoring: upload -> job id; status with progress and line errors; streamed result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from serving.deps import PredictCaller, StateDep
from serving.errors import NotFoundError, RequestError
from serving.prediction import choose_model
from serving.schemas import BatchJobStatus

router = APIRouter(prefix="/v1/batch", tags=["batch"])

_UPLOAD_READ = 1 << 20


@router.post("", response_model=BatchJobStatus, status_code=202, responses={413: {}, 422: {}})
async def submit(
    request: Request,
    state: StateDep,
    _caller: PredictCaller,
    variant: str | None = None,
    scene: Annotated[str | None, Query(max_length=200)] = None,
) -> BatchJobStatus:
    """Upload a raw tracks file (CSV with header, or ETH text with content-type text/plain)
    as the body or a multipart `file` field; scoring starts in the background (one job at a
    time). `scene` names the scene of files without a scene column (default: "input")."""
    if variant is not None and variant not in state.variants.uris:
        raise RequestError("variant", f"unknown variant {variant!r}")
    _, _, model = choose_model(state, variant or state.variants.default, "batch")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError("file", "multipart upload needs a `file` field")
        suffix = PurePath(upload.filename or "upload.csv").suffix or ".csv"
        job = await state.jobs.spool(_read_upload(upload), suffix)
    else:
        suffix = ".txt" if content_type.startswith("text/plain") else ".csv"
        job = await state.jobs.spool(request.stream(), suffix)
    state.jobs.start(job, model, scene)
    return job.to_status()


async def _read_upload(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_UPLOAD_READ):
        yield chunk


@router.get("/{job_id}", response_model=BatchJobStatus)
async def status(job_id: str, state: StateDep, _caller: PredictCaller) -> BatchJobStatus:
    """Status, progress (bytes, rows, windows) and the first rejected lines with reasons."""
    return state.jobs.get(job_id).to_status()


@router.get("/{job_id}/result", response_class=FileResponse, responses={404: {}, 409: {}})
async def result(job_id: str, state: StateDep, _caller: PredictCaller) -> FileResponse:
    """The scored CSV (streamed from disk): one row per agent, window, step and sample."""
    job = state.jobs.get(job_id)
    if job.status != "done":
        raise NotFoundError(f"job {job_id} is {job.status}; no result yet", status=409)
    return FileResponse(job.output_path, media_type="text/csv", filename=f"{job_id}.csv")
