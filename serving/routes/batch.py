"""Batch CSV scoring: upload -> job id; status with progress and line errors; streamed result.

A job belongs to the API key that submitted it: another key is told it does not exist.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from serving.deps import Caller, PredictCaller, StateDep, ensure_admin
from serving.errors import RequestError, documented
from serving.jobs import Upload
from serving.prediction import choose_model
from serving.schemas import BatchJobStatus

router = APIRouter(prefix="/v1/batch", tags=["batch"])

_UPLOAD_READ = 1 << 20
_NAME_MAX = 100
_RETRY_AFTER_S = 30
# media types a tracks file may come as; a JSON or form body is a mistake, said at once
_ACCEPTED = re.compile(
    r"^(text/[\w.+-]+|application/(octet-stream|csv|vnd\.ms-excel)|multipart/form-data)$"
)


def owner_of(caller: Caller) -> str:
    """The `batch_jobs.owner` of a caller: a fingerprint of its key, never the key."""
    return caller.key_hash[:16]


def display_name(filename: str | None, default: str) -> str:
    """A client's file name fit for messages: last path part, no control or format
    characters (NUL, bidi overrides), at most `_NAME_MAX` characters. Never a path."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if name in {"", ".", ".."}:
        return default
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 17] + "…" + name[-16:]
    return name


def spool_suffix(name: str, content_type: str) -> str:
    """`.txt` (ETH text) or `.csv` (with header): the name's suffix if it is one of them,
    else by media type."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in {".csv", ".txt"}:
        return suffix
    return ".txt" if content_type.startswith("text/plain") else ".csv"


def check_media_type(content_type: str | None, source: str) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and not _ACCEPTED.match(media):
        raise RequestError(
            source,
            f"{media} is not a tracks file: send a CSV (text/csv) or "
            "ETH text (text/plain) as the body or as a multipart `file` field",
        )
    return media


@router.post("", response_model=BatchJobStatus, status_code=202, responses=documented(413, 429))
async def submit(
    request: Request,
    state: StateDep,
    caller: PredictCaller,
    variant: Annotated[str | None, Query(max_length=64)] = None,
    scene: Annotated[str | None, Query(max_length=200)] = None,
) -> BatchJobStatus:
    """Upload a raw tracks file (CSV with header, or ETH text with content-type text/plain)
    as the body or a multipart `file` field; scoring starts in the background (one job at a
    time per replica). `scene` names the scene of files without a scene column (default:
    "input"). `variant` forces a variant and needs an admin key. A key may hold
    SERVING_BATCH_MAX_QUEUED_PER_KEY queued or running jobs (429 beyond)."""
    if variant is not None:
        ensure_admin(caller, "forcing a variant")
        if variant not in state.variants.uris:
            raise RequestError("variant", f"unknown variant {variant!r}")
    _, _, model = choose_model(state, variant or state.variants.default, "batch")
    owner, limit = owner_of(caller), state.settings.batch_max_queued_per_key
    if await state.jobs.active(owner) >= limit:
        raise HTTPException(
            429,
            f"this API key already has {limit} batch jobs queued or running (the limit); "
            "wait for one to finish",
            headers={"Retry-After": str(_RETRY_AFTER_S)},
        )
    media = check_media_type(request.headers.get("content-type"), "content-type")
    upload = await _upload(request, media)
    client_key = state.pseudonyms.client(request.headers.get("x-client-id"))
    return await state.jobs.submit(upload, owner, client_key, model, scene)


async def _upload(request: Request, media: str) -> Upload:
    if media != "multipart/form-data":
        suffix = ".txt" if media == "text/plain" else ".csv"
        return Upload(request.stream(), suffix, "request body", "body")
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise RequestError("file", "multipart upload needs a `file` field")
    part_media = check_media_type(upload.content_type, "file")
    name = display_name(upload.filename, "upload")
    return Upload(_read(upload), spool_suffix(name, part_media), name, "file")


async def _read(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_UPLOAD_READ):
        yield chunk


@router.get("/{job_id}", response_model=BatchJobStatus, responses=documented(404))
async def status(job_id: str, state: StateDep, caller: PredictCaller) -> BatchJobStatus:
    """Status, progress (bytes, rows, windows) and the first rejected lines with reasons."""
    return await state.jobs.status(job_id, owner_of(caller))


@router.get("/{job_id}/result", response_class=FileResponse, responses=documented(404, 409))
async def result(job_id: str, state: StateDep, caller: PredictCaller) -> FileResponse:
    """The scored CSV (streamed from disk): one row per agent, window, step and sample."""
    path = await state.jobs.result(job_id, owner_of(caller))
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}.csv")
