"""`/api/{app}/_files`: upload (streamed to storage, limit enforced while streaming), serve
(sendfile for local files, else streamed from the backend a chunk at a time; Range, ETag, safe
Content-Disposition either way), list, delete, and the orphan sweep.

The upload route is exempt from `server.max_body_size` (it is marked `streams_body`); its limit is
`storage.max_file_size`, checked against the declared length up front (with room for the
multipart framing) and against the bytes as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, web

from rocketd.capabilities.files import files
from rocketd.capabilities.files.service import STORAGE
from rocketd.errors import ErrorDetail, FileTooLarge, InvalidPayload, NotFound
from rocketd.http import ranges
from rocketd.http.keys import APP_ACTOR, PRINCIPAL, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, app_token
from rocketd.http.responses import data
from rocketd.logging import get_logger
from rocketd.storage import MissingObject, Storage, TooLarge
from rocketd.tracing import annotate, traced

log = get_logger("rocketd.files")


STREAMS_BODY_ATTR: Final = "__rocketd_streams_body__"
CHUNK: Final = 256 * 1024
MULTIPART_SLACK: Final = 64 * 1024  # framing and the other small parts a form may carry
MISSING_FILE: Final = "Missing file in form data"


def _storage(request: web.Request) -> Storage:
    """The configured backend (a process service) bound to the request's app."""
    actor = request[APP_ACTOR]
    return actor.context.service(STORAGE).for_app(actor.app_name, actor.pool)


def _too_large(size: int, limit: int) -> FileTooLarge:
    return FileTooLarge(f"File too large: {size} bytes (max {limit})")


async def _file_part(request: web.Request) -> tuple[MultipartReader, BodyPartReader]:
    if not request.content_type.startswith("multipart/"):
        raise InvalidPayload(MISSING_FILE, [ErrorDetail("body must be multipart/form-data")])
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise InvalidPayload(MISSING_FILE, [ErrorDetail("no part named file")])
            if isinstance(part, BodyPartReader) and part.name == "file":
                return reader, part
            await part.release()
    except InvalidPayload:
        raise
    except Exception as exc:  # malformed framing, truncated body
        raise InvalidPayload("Malformed multipart body") from exc


async def _chunks(reader: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    """The file part's bytes; then the rest of the form is read through to its closing
    boundary, so a body cut short (a Content-Length smaller than the form) fails the upload
    instead of storing a truncated file."""
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            break
        yield chunk
    while True:
        rest = await reader.next()
        if rest is None:
            return
        await rest.release()


@app_token
@traced("storage", "file", "file.upload")
async def upload(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    limit = request.app[SERVICES].settings.storage.max_file_size
    declared = request.content_length
    if declared is not None and declared > limit + MULTIPART_SLACK:
        raise _too_large(declared, limit)
    reader, part = await _file_part(request)
    try:
        body = await files.store_upload(
            actor.pool,
            _storage(request),
            actor.app_name,
            filename=part.filename,
            declared_type=part.headers.get("Content-Type"),
            chunks=_chunks(reader, part),
            limit=limit,
            uploaded_by=request[PRINCIPAL].user_id,
        )
    except TooLarge as exc:
        raise _too_large(exc.seen, limit) from exc
    except (ValueError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise InvalidPayload("Malformed multipart body") from exc
    annotate(file_id=body.get("id"), filename=body.get("filename"), size=body.get("size"))
    return data(body, 201)


setattr(upload, STREAMS_BODY_ATTR, True)


def content_disposition(filename: str, mime_type: str) -> str:
    """RFC 6266: an ASCII fallback in `filename` (quotes, backslashes and non-ASCII replaced)
    plus the exact name in `filename*`. Active types are attachments, never rendered inline."""
    kind = "attachment" if mime_type in files.ACTIVE_TYPES else "inline"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@app_token
@traced("storage", "file", "file.serve")
async def serve(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    raw_id = request.match_info["id"]
    row = await files.get_file(actor.pool, raw_id)
    annotate(file_id=raw_id, filename=row["filename"], size=row["size"])
    storage = _storage(request)
    key = str(row["storage_path"])
    mime = str(row["mime_type"])
    headers = {
        "Content-Type": mime,
        "Content-Disposition": content_disposition(str(row["filename"]), mime),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    path = storage.local_file(key)
    if path is not None:
        return web.FileResponse(path, chunk_size=CHUNK, headers=headers)
    size = await storage.size(key)
    if size is None:
        raise NotFound(f"File {raw_id} not found on disk")
    return await _stream(request, storage, key, size, row, headers)


async def _stream(
    request: web.Request,
    storage: Storage,
    key: str,
    size: int,
    row: dict[str, Any],
    headers: dict[str, str],
) -> web.StreamResponse:
    """Serve an object the backend streams: conditional requests, one byte range, and the body
    a chunk at a time (never the whole file in memory). A file's bytes never change under its id,
    so the id and size make a strong ETag and the upload time is Last-Modified."""
    etag = f"{row['id'].hex}-{size:x}"
    modified = row["created_at"]
    response = web.StreamResponse(headers=headers)
    response.etag = etag
    response.last_modified = modified
    response.headers["Accept-Ranges"] = "bytes"
    if ranges.precondition_failed(request, etag, modified):
        response.set_status(412)
        response.content_length = 0
        await response.prepare(request)
        return response
    if ranges.not_modified(request, etag, modified):
        response.set_status(304)
        for name in ("Content-Type", "Content-Length", "Content-Disposition"):
            response.headers.pop(name, None)
        await response.prepare(request)
        return response
    wanted: ranges.ByteRange | None = None
    if ranges.range_applies(request, etag, modified):
        try:
            wanted = ranges.requested_range(request.headers.get("Range"), size)
        except ranges.Unsatisfiable:
            response.set_status(416)
            response.headers["Content-Range"] = f"bytes */{size}"
            response.content_length = 0
            await response.prepare(request)
            return response
    part = wanted or ranges.ByteRange(0, size)
    if wanted is not None:
        response.set_status(206)
        response.headers["Content-Range"] = wanted.content_range(size)
    response.content_length = part.length
    await response.prepare(request)
    if request.method == "HEAD" or part.length == 0:
        return response
    try:
        async for chunk in storage.open_read(key, part.start, part.end):
            await response.write(chunk)
    except MissingObject:
        # Headers are gone already: all that is left is to cut the connection short, so the
        # client sees a body shorter than Content-Length rather than a complete-looking file.
        log.warning("file bytes vanished while being served", file_id=str(row["id"]))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


@app_admin
async def list_files(request: web.Request) -> web.StreamResponse:
    return data(await files.list_files(request[APP_ACTOR].pool))


@app_admin
@traced("storage", "file", "file.delete")
async def delete_file(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    annotate(file_id=request.match_info["id"][:64])
    force = request.rel_url.query.get("force", "false")
    if force not in ("true", "false"):
        raise InvalidPayload("force must be true or false")
    await files.delete_file(
        actor.pool,
        _storage(request),
        actor.snapshot.registry,
        request.match_info["id"],
        force=force == "true",
    )
    return data({"deleted": True})


@app_admin
async def sweep(request: web.Request) -> web.StreamResponse:
    """Remove stored bytes that have no `_files` row (older than `grace_seconds`, default 3600)."""
    actor = request[APP_ACTOR]
    raw = request.query.get("grace_seconds", str(files.SWEEP_GRACE_SECONDS))
    try:
        grace = float(raw)
    except ValueError:
        grace = -1.0
    if not grace >= 0:
        raise InvalidPayload(
            "Invalid query", [ErrorDetail("grace_seconds must be a number >= 0", "grace_seconds")]
        )
    report = await files.sweep_orphans(actor.pool, _storage(request), grace_seconds=grace)
    return data(report)


def add_routes(app: web.Application) -> None:
    r = app.router
    base = f"{APP_PATH}/_files"
    r.add_post(base + "/upload", upload)
    r.add_get(base, list_files)
    r.add_get(base + "/{id}", serve)
    r.add_delete(base + "/{id}", delete_file)
    r.add_post(f"{APP_PATH}/_admin/files/sweep", sweep)
