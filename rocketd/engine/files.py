"""Uploaded files: `_files` rows plus bytes in a `Storage` backend, and `file` field resolution.

Consistency between the row and the bytes, whatever the storage driver: an upload writes the bytes
first (committed only when complete: a renamed file, or chunks whose file has no row yet) and
inserts the row after; a failed insert removes the bytes. A delete removes the row first and the
bytes after. Either way a crash in between can only leave bytes without a row, never a row
pointing at bytes that were never written; `sweep_orphans` removes such bytes once they are older
than a grace period (so uploads still in flight are left alone). It runs lazily after uploads (at
most once per interval per app) and on demand.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import AsyncIterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.engine.sql_compose import ident, live_condition
from rocketd.errors import Conflict, ErrorDetail, NotFound, ValidationFailed
from rocketd.metadata.model import Entity
from rocketd.metadata.registry import Registry
from rocketd.storage.base import Storage, write_object

MAX_FILENAME: Final = 255
DEFAULT_MIME: Final = "application/octet-stream"
SWEEP_GRACE_SECONDS: Final = 3600.0

# Types a browser would execute or render as a document: always served as attachments.
ACTIVE_TYPES: Final = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
    }
)

# (signature at offset 0, type). Checked against the first bytes of the upload.
_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BM", "image/bmp"),
)
# Declared types a ZIP signature legitimately carries (office documents, archives).
_ZIP_FAMILY: Final = (
    "application/zip",
    "application/vnd.",
    "application/epub+zip",
    "application/java-archive",
)


def sniff(head: bytes) -> str | None:
    """The type the bytes announce, when they carry a known signature."""
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = head.lstrip()[:256].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<script")):
        return "text/html"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "image/svg+xml"
    return None


def effective_mime(declared: str | None, head: bytes) -> str:
    """The stored type: the declared one unless the bytes carry a signature that contradicts it,
    in which case the signature wins (an `image/png` that is really HTML is stored as HTML and
    therefore served as an attachment)."""
    declared_clean = (declared or "").split(";")[0].strip().lower() or DEFAULT_MIME
    if len(declared_clean) > 127 or any(c in declared_clean for c in "\r\n\x00"):
        declared_clean = DEFAULT_MIME
    found = sniff(head)
    if found is None or found == declared_clean:
        return declared_clean
    if found == "application/zip" and declared_clean.startswith(_ZIP_FAMILY):
        return declared_clean
    return found


def clean_filename(raw: str | None) -> str:
    """The name kept in `_files.filename`: the last path component, without control characters
    (NUL included), NFC-normalised, at most 255 characters (the extension kept); "file" when
    nothing is left. It is never used for a path on disk."""
    name = raw or ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def is_file_id(value: str) -> uuid.UUID | None:
    """A UUID in its canonical text form (any case), else None."""
    if len(value) != 36:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value.lower() else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def file_url(app: str, file_id: str) -> str:
    return f"/api/{app}/_files/{file_id}"


def not_found(raw_id: str) -> NotFound:
    shown = raw_id if len(raw_id) <= 100 else raw_id[:100] + "..."
    return NotFound(f"File {shown} not found")


async def store_upload(
    pool: AsyncConnectionPool[Any],
    storage: Storage,
    app: str,
    *,
    filename: str | None,
    declared_type: str | None,
    chunks: AsyncIterable[bytes],
    limit: int,
    uploaded_by: str | None,
) -> dict[str, Any]:
    """Stream the bytes to storage, then record them. `TooLarge` propagates (nothing kept)."""
    file_id = str(uuid.uuid4())
    stored = await write_object(storage, file_id, chunks, limit)
    name = clean_filename(filename)
    mime = effective_mime(declared_type, stored.head)
    try:
        async with pool.connection() as conn:
            await conn.execute(
                "insert into _files (id, filename, storage_path, mime_type, size, uploaded_by)"
                " values (%s, %s, %s, %s, %s, %s)",
                (file_id, name, stored.key, mime, stored.size, _user_uuid(uploaded_by)),
            )
    except BaseException:
        await storage.delete(stored.key)
        raise
    return {
        "id": file_id,
        "filename": name,
        "size": stored.size,
        "mime_type": mime,
        "url": file_url(app, file_id),
    }


def _user_uuid(raw: str | None) -> uuid.UUID | None:
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None  # platform callers have ids of another table; not an app user


async def get_file(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    key = is_file_id(raw_id)
    if key is None:
        raise not_found(raw_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _files where id = %s", (key,))
        row = await cur.fetchone()
    if row is None:
        raise not_found(raw_id)
    return dict(row)


async def list_files(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select id, filename, mime_type, size, uploaded_by, created_at from _files"
            " order by created_at desc, id"
        )
        rows = await cur.fetchall()
    return [
        {
            "id": str(r["id"]),
            "filename": r["filename"],
            "mime_type": r["mime_type"],
            "size": r["size"],
            "uploaded_by": None if r["uploaded_by"] is None else str(r["uploaded_by"]),
            "created_at": _iso(r["created_at"]),
        }
        for r in rows
    ]


async def delete_file(
    pool: AsyncConnectionPool[Any],
    storage: Storage,
    registry: Registry,
    raw_id: str,
    *,
    force: bool = False,
) -> None:
    """Delete a file unless a live record's `file` field still holds it (409 naming the first
    such entity and field; upstream-gaps C37); `force` deletes anyway, and such records keep
    their copy of the metadata (the spec's behaviour). The row goes first (committed), then the
    bytes: a crash between leaves only bytes without a row, which the sweep removes."""
    key = is_file_id(raw_id)
    if key is None:
        raise not_found(raw_id)
    async with pool.connection() as conn:
        if not force:
            holder = await _first_reference(conn, registry, str(key))
            if holder is not None:
                entity, field = holder
                message = (
                    f"File {raw_id} is referenced by {entity}.{field};"
                    " delete with ?force=true to remove it anyway"
                )
                raise Conflict(message, [ErrorDetail(message, f"{entity}.{field}", "referenced")])
        cur = await conn.execute("delete from _files where id = %s returning storage_path", (key,))
        row = await cur.fetchone()
    if row is None:
        raise not_found(raw_id)
    await storage.delete(str(row[0]))


async def _first_reference(
    conn: AsyncConnection[Any], registry: Registry, file_id: str
) -> tuple[str, str] | None:
    """(entity, field) of the first live record whose `file` field holds `file_id` (canonical
    lowercase, as stored), or None. One statement: a `LIMIT 1` probe per file field, stopped at
    the first hit."""
    probes: list[sql.Composable] = []
    params: list[Any] = []
    for entity in registry.entities.values():
        live = live_condition(entity)
        for field in entity.fields:
            if field.base_type != "file":
                continue
            probes.append(
                sql.SQL("(SELECT %s, %s FROM {} WHERE {} ->> 'id' = %s{} LIMIT 1)").format(
                    ident(entity.table),
                    ident(field.name),
                    sql.SQL("") if live is None else sql.SQL(" AND ") + live,
                )
            )
            params += [entity.name, field.name, file_id]
    if not probes:
        return None
    statement = sql.SQL(" UNION ALL ").join(probes) + sql.SQL(" LIMIT 1")
    cur = await conn.execute(statement, params)
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


async def sweep_orphans(
    pool: AsyncConnectionPool[Any],
    storage: Storage,
    *,
    grace_seconds: float = SWEEP_GRACE_SECONDS,
) -> dict[str, Any]:
    """Remove stored objects without a `_files` row (older than the grace period), and report rows
    whose bytes are missing (kept: serving them answers 404)."""
    stored = await storage.objects()
    async with pool.connection() as conn:
        cur = await conn.execute("select id from _files")
        rows = {str(r[0]) for r in await cur.fetchall()}
    removed: list[str] = []
    for file_id, entry in stored.items():
        if file_id in rows:
            continue
        if entry.age_seconds >= grace_seconds:
            await storage.delete(entry.key)
            removed.append(file_id)
    missing = sorted(fid for fid in rows if fid not in stored or not stored[fid].complete)
    return {"removed": sorted(removed), "missing_bytes": missing}


# ------------------------------------------------------------------------ file field values


def file_value(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "filename": row["filename"],
        "size": row["size"],
        "mime_type": row["mime_type"],
    }


# The keys of a file object as the API hands it out: a record's `file` field holds the first four,
# the upload answer adds `url`. A file object sent back may carry no others.
FILE_OBJECT_KEYS: Final = ("id", "filename", "size", "mime_type", "url")
_DOWNLOAD_PATH: Final = re.compile(r"/api/[a-z][a-z0-9_]*/_files/([0-9a-fA-F-]{36})")


def _refused(path: str, message: str) -> ValidationFailed:
    return ValidationFailed("Validation failed", [ErrorDetail(f"{path} {message}", path, "file")])


def _named_id(value: Any) -> uuid.UUID | None:
    """The file id a `file` field value names: the string itself, or an object's `id`."""
    if isinstance(value, str):
        return is_file_id(value)
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return is_file_id(value["id"])
    return None


def _same(given: Any, stored: Any) -> bool:
    """Equal values of the same JSON type (`true` is not `1`, `"48"` is not `48`)."""
    return type(given) is type(stored) and given == stored


def _file_field_value(
    path: str, value: Any, files: Mapping[uuid.UUID, dict[str, Any]]
) -> dict[str, Any] | None:
    """What a `file` field stores for `value`: None for null, else the `_files` metadata of the
    file it names. A string must be a file id of this app (404 otherwise); an object must be a
    file object as the API returned it, naming a file of this app, every value it carries equal
    to the stored one (422 otherwise). Caller-supplied names, types, sizes or URLs are never
    stored."""
    if value is None:
        return None
    if isinstance(value, str):
        file_id = is_file_id(value)
        if file_id is None:
            raise _refused(path, "must be a file id (UUID) or a file object")
        if file_id not in files:
            raise not_found(value)
        return files[file_id]
    if not isinstance(value, Mapping):
        raise _refused(path, "must be a file id (UUID) or a file object")
    unknown = sorted(str(k) for k in value if k not in FILE_OBJECT_KEYS)
    if unknown:
        keys = ", ".join(FILE_OBJECT_KEYS)
        raise _refused(path, f"has keys a file object does not have: {', '.join(unknown)} ({keys})")
    file_id = _named_id(value)
    if file_id is None:
        raise _refused(path, "must name a file by its id (the id an upload answered)")
    stored = files.get(file_id)
    if stored is None:
        raise not_found(str(value["id"]))
    for key, given in value.items():
        if key == "id":
            continue
        if key == "url":
            match = _DOWNLOAD_PATH.fullmatch(given) if isinstance(given, str) else None
            matches = match is not None and is_file_id(match.group(1)) == file_id
        else:
            matches = _same(given, stored[key])
        if not matches:
            raise _refused(
                path, f"{key} does not match the stored file (send the file id alone to set it)"
            )
    return stored


def _file_relations(
    registry: Registry, entity: Entity, name: str, value: Any
) -> tuple[Entity, list[Any]] | None:
    """(child entity, items) when `name` is a nested write of children (not many-to-many links,
    whose items write nothing but the join table)."""
    ref = registry.resolve(entity.name, name, for_write=True)
    if ref is None or ref.relation.many_to_many or not isinstance(value, Mapping):
        return None
    child = registry.entity(ref.other)
    items = value.get("data")
    if child is None or not isinstance(items, list):
        return None
    return child, items


def _collect_ids(
    registry: Registry, entity: Entity, body: Mapping[str, Any], found: set[uuid.UUID]
) -> None:
    for name, value in body.items():
        field = entity.field_map.get(name)
        if field is not None:
            if field.base_type == "file":
                file_id = _named_id(value)
                if file_id is not None:
                    found.add(file_id)
            continue
        nested = _file_relations(registry, entity, name, value)
        if nested is not None:
            child, items = nested
            for item in items:
                if isinstance(item, Mapping):
                    _collect_ids(registry, child, item, found)


def _replace_ids(
    registry: Registry,
    entity: Entity,
    body: Mapping[str, Any],
    files: Mapping[uuid.UUID, dict[str, Any]],
    path: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in body.items():
        where = f"{path}.{name}" if path else name
        field = entity.field_map.get(name)
        if field is not None:
            if field.base_type == "file":
                value = _file_field_value(where, value, files)
            out[name] = value
            continue
        nested = _file_relations(registry, entity, name, value)
        if nested is not None:
            child, items = nested
            value = {
                **value,
                "data": [
                    _replace_ids(registry, child, item, files, f"{where}[{index}]")
                    if isinstance(item, Mapping)
                    else item
                    for index, item in enumerate(items)
                ],
            }
        out[name] = value
    return out


def has_file_fields(registry: Registry, entity: Entity) -> bool:
    """Whether a write to `entity` (nested children included) can carry a `file` field."""
    seen: set[str] = set()
    pending = [entity.name]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        current = registry.entity(name)
        if current is None:
            continue
        if any(f.base_type == "file" for f in current.fields):
            return True
        pending.extend(r.target for r in registry.relations_from(name))
    return False


async def resolve_file_ids(
    conn: AsyncConnection[Any], registry: Registry, entity: Entity, body: dict[str, Any]
) -> dict[str, Any]:
    """The body with every `file` field value (the record's and its nested children's) replaced
    by the `_files` metadata of the file it names (`_file_field_value`): 404 `File {id} not
    found` for an id of no file of this app, 422 rule `file` for anything else that is not a
    file id or the file object as the API returned it. Null passes unchanged."""
    if not has_file_fields(registry, entity):
        return body
    ids: set[uuid.UUID] = set()
    _collect_ids(registry, entity, body, ids)
    files: dict[uuid.UUID, dict[str, Any]] = {}
    if ids:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select id, filename, size, mime_type from _files where id = any(%s)", (list(ids),)
        )
        files = {r["id"]: file_value(r) for r in await cur.fetchall()}
    return _replace_ids(registry, entity, body, files)
