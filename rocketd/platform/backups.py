"""Backing apps up (`rocketd backup`) and restoring them (`rocketd restore`); the archive format
itself is `rocketd.engine.backup_archive`.

Backup: per app, the dump and the list of local files come from one exported snapshot, so the
archive holds exactly the files the dumped `_files` table names; files of the `postgres` driver
are rows of the app database and travel inside the dump.

Restore checks every checksum before it changes anything, refuses to replace an existing app
unless forced, and then per app: inserts the `_apps` row as `restoring` (never served, and left
alone by the startup repair), creates the database and fills it with `pg_restore` in a single
transaction, writes the archived files through the configured storage driver (so an archive of
local files can land in the database, and the other way round), and finally marks the row
`active` and announces it (`NOTIFY rocket_metadata '_apps:<app>'`), which running instances take
as "serve this app". A failure at any step removes what that app's restore created.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd import __version__
from rocketd.auth.tokens import new_app_secret
from rocketd.config import Settings
from rocketd.db import notify
from rocketd.db.app_schema import APP_PLAN
from rocketd.db.dump_tools import DumpTools, find_dump_tools, server_major
from rocketd.db.migrations import apply_plan
from rocketd.db.notify import AppChanged
from rocketd.errors import ApiError, NotFound
from rocketd.logging import get_logger
from rocketd.platform import apps
from rocketd.platform.app_names import db_name_for, validate_app_name
from rocketd.platform.backup_archive import (
    FORMAT,
    FORMAT_VERSION,
    PLATFORM,
    Archive,
    ArchiveWriter,
    BackupError,
    app_member,
    verified_archive,
)
from rocketd.storage import LocalDriver, open_storage, write_object
from rocketd.storage.postgres import file_id_of
from rocketd.timestamps import iso_utc, now_text

log = get_logger("rocketd.backups")

STATUS_RESTORING: Final = "restoring"


def default_archive_name(names: list[str], everything: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    what = "all" if everything else names[0] if len(names) == 1 else f"{len(names)}-apps"
    return f"rocketd-backup-{what}-{stamp}.tar"


@dataclass
class BackupReport:
    path: Path
    apps: list[str]
    files: int
    missing_files: dict[str, list[str]]
    platform: bool
    size: int


async def server_version(pool: AsyncConnectionPool[Any]) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("show server_version")
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def backup(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    names: list[str],
    *,
    everything: bool,
    output: Path,
    pg_bindir: str | None = None,
) -> BackupReport:
    """Write the archive of `names` (or of every active app and the platform rows)."""
    if everything:
        rows = [r for r in await apps.list_apps(pool) if r.status == apps.STATUS_ACTIVE]
    else:
        rows = []
        for name in dict.fromkeys(names):
            try:
                rows.append(await apps.get_app(pool, name))
            except NotFound:
                raise BackupError(f"no app named {name} (see `rocketd apps list`)") from None
    version = await server_version(pool)
    tools = find_dump_tools(version, pg_bindir)
    writer = ArchiveWriter(output)
    work = Path(tempfile.mkdtemp(prefix=".rocketd-backup-", dir=output.parent))
    try:
        entries = []
        missing: dict[str, list[str]] = {}
        for row in rows:
            entry = await _backup_app(settings, row, tools, writer, work)
            entries.append(entry)
            if entry["missing_files"]:
                missing[row.name] = entry["missing_files"]
        if everything:
            writer.add_bytes(PLATFORM, _json(await _platform_rows(pool)))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "rocketd_version": __version__,
            "created_at": now_text(),
            "all": everything,
            "apps": entries,
            "platform": everything,
            "postgres_server_version": version,
            "pg_dump_version": tools.version,
            "storage_driver": settings.storage.driver,
        }
        writer.finish(manifest)
    except BaseException:
        writer.discard()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupReport(
        path=output,
        apps=[r.name for r in rows],
        files=sum(int(e["files_on_disk"]) for e in entries),
        missing_files=missing,
        platform=everything,
        size=output.stat().st_size,
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()


async def _backup_app(
    settings: Settings, row: apps.AppRow, tools: DumpTools, writer: ArchiveWriter, work: Path
) -> dict[str, Any]:
    dsn = settings.database.dsn(row.db_name)
    dump = work / f"{row.name}.dump"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        # One snapshot for the dump and the file list: the archive's files are exactly the
        # ones the dumped `_files` rows name.
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        cur = await conn.execute("select pg_export_snapshot()")
        snapshot = await cur.fetchone()
        assert snapshot is not None
        await tools.run(
            "pg_dump",
            [
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot[0]}",
                f"--file={dump}",
            ],
            dsn,
        )
        files: list[tuple[str, str]] = []
        cur = await conn.execute("select to_regclass('_files') is not null")
        has_files = await cur.fetchone()
        if has_files and has_files[0]:  # an app database of a release before files has none
            cur = await conn.execute("select id::text, storage_path from _files order by id")
            files = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
        await conn.rollback()
    writer.add_bytes(
        app_member(row.name, "app.json"),
        _json(
            {
                "name": row.name,
                "display_name": row.display_name,
                "db_driver": row.db_driver,
                "jwt_secret": row.jwt_secret,
                "created_at": iso_utc(row.created_at),
            }
        ),
    )
    writer.add_file(app_member(row.name, "database.dump"), dump)
    dump.unlink()
    local = LocalDriver(settings.storage.local_path).for_app(row.name)
    on_disk = in_database = 0
    missing: list[str] = []
    for file_id, key in files:
        if file_id_of(key) is not None:
            in_database += 1
            continue
        path = local.local_file(key)
        if path is None:
            missing.append(file_id)
            log.warning("file bytes missing; not in the backup", app=row.name, file_id=file_id)
            continue
        writer.add_file(app_member(row.name, f"files/{file_id}"), path)
        on_disk += 1
    return {
        "name": row.name,
        "display_name": row.display_name,
        "db_name": row.db_name,
        "files_on_disk": on_disk,
        "files_in_database": in_database,
        "missing_files": missing,
    }


async def _platform_rows(pool: AsyncConnectionPool[Any]) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select id::text, email, password_hash, roles, active, created_at, updated_at"
            " from _platform_users order by email"
        )
        users = await cur.fetchall()
        await cur.execute("select key, value, created_at from _platform_settings order by key")
        platform_settings = await cur.fetchall()
    return {
        "users": [
            {**u, "created_at": iso_utc(u["created_at"]), "updated_at": iso_utc(u["updated_at"])}
            for u in users
        ],
        "settings": [{**s, "created_at": iso_utc(s["created_at"])} for s in platform_settings],
    }


# --------------------------------------------------------------------------------- reading


# --------------------------------------------------------------------------------- restoring


@dataclass
class RestoreReport:
    apps: dict[str, str]  # archived name -> restored name
    files: int
    platform_users: int = 0
    platform_settings: int = 0
    replaced: list[str] = field(default_factory=list)


async def restore(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    path: Path,
    *,
    only: str | None = None,
    rename: str | None = None,
    force: bool = False,
    platform: bool = False,
    pg_bindir: str | None = None,
) -> RestoreReport:
    with verified_archive(path) as archive:
        plan = _restore_plan(archive, only, rename)
        if platform and PLATFORM not in archive.members:
            raise BackupError(f"{path} holds no platform rows (it was not made with --all)")
        version = await server_version(pool)
        tools = find_dump_tools(version, pg_bindir)
        dumped_by = str(archive.manifest.get("pg_dump_version", ""))
        if dumped_by and _major_number(dumped_by) > _major_number(tools.version):
            raise BackupError(
                f"{path} was dumped by pg_dump {dumped_by}; PostgreSQL {version} cannot read it "
                f"(restore it on PostgreSQL {server_major(dumped_by)} or newer)"
            )
        replaced = await _check_targets(settings, pool, plan, force)
        report = RestoreReport(apps={}, files=0, replaced=replaced)
        for source, target in plan.items():
            if target in replaced:
                await apps.delete_app(settings, pool, target)
            report.files += await _restore_app(settings, pool, archive, tools, source, target)
            report.apps[source] = target
        if platform:
            saved = json.loads(archive.read(PLATFORM))
            report.platform_users, report.platform_settings = await _restore_platform(
                pool, saved, force
            )
    return report


def _major_number(version: str) -> int:
    return int(server_major(version).split(".")[0])


def _restore_plan(archive: Archive, only: str | None, rename: str | None) -> dict[str, str]:
    names = archive.app_names
    if only is not None:
        if only not in names:
            held = ", ".join(names) or "no apps"
            raise BackupError(f"{archive.path} holds no app named {only} (it holds: {held})")
        names = [only]
    if rename is not None:
        if len(names) != 1:
            raise BackupError("--as needs exactly one app: name it with --app")
        try:
            validate_app_name(rename)
        except ApiError as err:
            raise BackupError(f"--as {rename}: {err.message}") from None
        return {names[0]: rename}
    return {name: name for name in names}


async def _check_targets(
    settings: Settings, pool: AsyncConnectionPool[Any], plan: dict[str, str], force: bool
) -> list[str]:
    """Refuse (before anything changes) what cannot be restored; return the apps to replace."""
    existing: list[str] = []
    for target in plan.values():
        db_name = db_name_for(target)
        if db_name == settings.database.database_name:
            raise BackupError(f"app {target} would use the management database's name")
        if await apps.find_app(pool, target) is not None:
            existing.append(target)
        elif await apps.database_exists(settings, db_name):
            raise BackupError(
                f"database {db_name} exists but belongs to no app; it is left alone: "
                "drop it yourself or restore under another name (--as)"
            )
    if existing and not force:
        which = (
            f"app {existing[0]} exists"
            if len(existing) == 1
            else (f"apps {', '.join(existing)} exist")
        )
        raise BackupError(
            f"{which} already; nothing was restored. Use --force to replace it (it is deleted "
            "first, database and all), or --as to restore under another name"
        )
    return existing


async def _restore_app(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    archive: Archive,
    tools: DumpTools,
    source: str,
    target: str,
) -> int:
    saved = json.loads(archive.read(app_member(source, "app.json")))
    # The same name keeps its secret (tokens issued before still work); a copy under another
    # name gets its own, so the two apps never accept each other's tokens.
    secret = saved["jwt_secret"] if target == source else new_app_secret()
    db_name = db_name_for(target)
    async with apps.app_lock(settings, target):
        try:
            async with pool.connection() as conn:
                await conn.execute(
                    "insert into _apps (name, display_name, db_name, db_driver, jwt_secret,"
                    " status, created_at) values (%s, %s, %s, 'postgres', %s, %s,"
                    " coalesce(%s::timestamptz, now()))",
                    (
                        target,
                        saved["display_name"] if target == source else target,
                        db_name,
                        secret,
                        STATUS_RESTORING,
                        saved.get("created_at"),
                    ),
                )
        except pg_errors.UniqueViolation:
            raise BackupError(f"app {target} was created meanwhile; nothing was restored") from None
        written: list[str] = []
        try:
            await _restore_database(settings, archive, tools, source, db_name)
            written = await _restore_files(settings, archive, source, target)
            async with pool.connection() as conn:
                await conn.execute(
                    "update _apps set status = %s, updated_at = now() where name = %s",
                    (apps.STATUS_ACTIVE, target),
                )
                await notify.send(conn, AppChanged(target))
        except BaseException:
            log.error("restore failed; removing what it created", app=target, exc_info=True)
            local = LocalDriver(settings.storage.local_path).for_app(target)
            for key in written:
                await local.delete(key)
            await apps.finish_delete(
                settings, pool, (await apps.find_app(pool, target)) or _stub(target)
            )
            raise
    log.info("app restored", app=target, source=source, files=len(written))
    return len(written)


def _stub(name: str) -> apps.AppRow:
    return apps.AppRow(name, name, db_name_for(name), "postgres", STATUS_RESTORING, None, None)


async def _restore_database(
    settings: Settings,
    archive: Archive,
    tools: DumpTools,
    source: str,
    db_name: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database.dsn(), autocommit=True) as c:
        # template0: nothing a site added to template1 can collide with the dump's objects.
        await c.execute(
            sql.SQL("create database {} template template0").format(sql.Identifier(db_name))
        )
    work = Path(tempfile.mkdtemp(prefix="rocketd-restore-"))
    try:
        dump = work / "database.dump"
        fd = os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in archive.stream(app_member(source, "database.dump")):
                out.write(chunk)
        dsn = settings.database.dsn(db_name)
        await tools.run(
            "pg_restore",
            ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", str(dump)],
            dsn,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # An archive of an older rocketd: bring the system tables up to this release.
    async with await psycopg.AsyncConnection.connect(settings.database.dsn(db_name)) as conn:
        await apply_plan(conn, APP_PLAN)
        await conn.commit()


async def _restore_files(
    settings: Settings, archive: Archive, source: str, target: str
) -> list[str]:
    """Write the archived local files through the configured driver and point their rows at
    the new keys; return the keys written."""
    prefix = app_member(source, "files/")
    names = sorted(n for n in archive.members if n.startswith(prefix))
    if not names:
        return []
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database.dsn(db_name_for(target)),
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open(wait=True)
    written: list[str] = []
    try:
        storage = open_storage(
            settings.storage.driver, settings.storage.local_path, settings.storage.chunk_size
        ).for_app(target, pool)
        for name in names:
            file_id = name[len(prefix) :]

            async def chunks(member: str = name) -> AsyncIterator[bytes]:
                for chunk in archive.stream(member):
                    yield chunk

            stored = await write_object(storage, file_id, chunks(), 2**62)
            written.append(stored.key)
            async with pool.connection() as conn:
                await conn.execute(
                    "update _files set storage_path = %s where id = %s", (stored.key, file_id)
                )
    finally:
        await pool.close()
    return written


async def _restore_platform(
    pool: AsyncConnectionPool[Any], saved: dict[str, Any], force: bool
) -> tuple[int, int]:
    """Insert the archived platform users (by email) and settings (by key) that are missing;
    with `force` also overwrite the ones that exist. Return how many rows were written."""
    on_user = (
        "do update set password_hash = excluded.password_hash, roles = excluded.roles,"
        " active = excluded.active, updated_at = now()"
        if force
        else "do nothing"
    )
    on_setting = "do update set value = excluded.value" if force else "do nothing"
    users = settings_written = 0
    async with pool.connection() as conn, conn.transaction():
        for user in saved.get("users", []):
            cur = await conn.execute(
                sql.SQL(
                    "insert into _platform_users (email, password_hash, roles, active, created_at)"
                    " values (%s, %s, %s, %s, coalesce(%s::timestamptz, now()))"
                    " on conflict (email) {}"
                ).format(sql.SQL(on_user)),
                (
                    user["email"],
                    user["password_hash"],
                    user["roles"],
                    user["active"],
                    user.get("created_at"),
                ),
            )
            users += cur.rowcount
        for item in saved.get("settings", []):
            cur = await conn.execute(
                sql.SQL(
                    "insert into _platform_settings (key, value) values (%s, %s)"
                    " on conflict (key) {}"
                ).format(sql.SQL(on_setting)),
                (item["key"], item["value"]),
            )
            settings_written += cur.rowcount
    return users, settings_written
