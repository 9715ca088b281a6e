"""The `rocketd` command line: serve, check-config, version, apps list|create|delete, export,
import, diff, platform set-password|set-email, backup, restore.

`check-config` validates the settings, then, when the database answers (an external one, or the
embedded one while a server runs it), reports accounts whose emails differ only in case (see
rocketd.db.email_index); it never starts a database or changes one.

`apps`, `export`/`import`/`diff`, `platform` and `backup`/`restore` talk to the databases directly (not over HTTP),
so they work while the server is down. With no database configured they use the embedded PostgreSQL in `data_dir`,
starting it for the command and stopping it afterwards unless a running server already owns it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog
import structlog.testing

from rocketd import __version__
from rocketd.config import ConfigError, Settings, load_settings
from rocketd.errors import ApiError
from rocketd.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rocketd",
        description="rocketd: JSON metadata in, a running REST backend out.",
        epilog="`rocketd COMMAND --help` describes each command. Settings: docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"rocketd {__version__}")
    parser.add_argument("--config", help=_CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = _command(
        sub,
        "serve",
        "run the server",
        "Run the HTTP server until SIGTERM or SIGINT. With no database configured it starts its"
        " own PostgreSQL in <data_dir>/postgres and stops it on exit. SIGHUP reopens the logs and"
        " reloads the settings that can change live (docs/systemd.md).",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes sharing the port (default: server.workers; 0: one per core,"
        " at most 8; 1: a single process, no supervisor)",
    )
    check = _command(
        sub,
        "check-config",
        "validate the configuration and print a summary",
        "Load the configuration (file, systemd credentials, ROCKET_* variables) and print a"
        " one-line summary; exit 1 on an error. When the database answers, also report accounts"
        " whose emails differ only in case. Changes nothing.",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="also fail on file keys and ROCKET_* variables that match no setting (by default"
        " they are warnings)",
    )
    _command(sub, "version", "print the version", "Print `rocketd VERSION` and exit.")
    apps = _command(
        sub,
        "apps",
        "manage apps (directly in the database)",
        "List, create and delete apps straight in the management database: no server needed."
        " With no database configured, the embedded PostgreSQL is started for the command.",
    )
    apps_sub = apps.add_subparsers(dest="apps_command", required=True, metavar="ACTION")
    _command(apps_sub, "list", "list apps", "Print one line per app: name, status, database.")
    create = _command(
        apps_sub,
        "create",
        "create an app",
        "Create the app: its database rocket_<name>, its schema and its seeded admin user"
        " (auth.app_admin_email / auth.app_admin_password).",
    )
    create.add_argument("name", help="the app name (lower case letters, digits, _; see docs)")
    create.add_argument("--display-name", default=None, help="a human-readable name")
    delete = _command(
        apps_sub,
        "delete",
        "delete an app and drop its database",
        "Delete the app and drop its database. Asks for confirmation on a terminal.",
    )
    delete.add_argument("name", help="the app to delete")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    export = _command(
        sub,
        "export",
        "print an app's schema document (JSON) to stdout",
        "Print the app's metadata (entities, relations, rules, ...) as one JSON document, the"
        " same as GET /api/APP/_admin/export (docs/export-import.md).",
    )
    export.add_argument("app", help="the app to export")
    imp = _command(
        sub,
        "import",
        "import a schema document into an app (all or nothing)",
        "Import a schema document into the app: everything is applied or nothing is"
        " (docs/export-import.md). Running servers pick the change up by themselves.",
    )
    imp.add_argument("app", help="the app to import into")
    imp.add_argument("file", help="the document (JSON); - reads stdin")
    diff = _command(
        sub,
        "diff",
        "print what importing a schema document would change (JSON), changing nothing",
        "Compare a schema document with the app: what an import would add, the items that"
        " differ (and whether import would change or leave them) and what only the app has,"
        " the same as POST /api/APP/_admin/diff (docs/export-import.md). Writes nothing.",
    )
    diff.add_argument("app", help="the app to compare with")
    diff.add_argument("file", help="the document (JSON); - reads stdin")
    _platform_parsers(sub)
    _backup_parsers(sub)
    # `--config` is accepted after the subcommand too (`rocketd serve --config x.yaml`).
    nested = [
        p for action in _subparser_actions(sub) for p in action.choices.values() if p is not None
    ]
    for p in (*sub.choices.values(), *nested):
        p.add_argument(
            "--config", dest="config_sub", metavar="CONFIG", default=None, help=_CONFIG_HELP
        )
    return parser


_CONFIG_HELP = "configuration file (default: $ROCKET_CONFIG, ./etc/rocket.yaml, ./app.yaml)"


def _command(sub: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary (in the parent's list) and its own description."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    return parser


def _platform_parsers(sub: Any) -> None:
    platform = _command(
        sub,
        "platform",
        "manage platform users (directly in the database)",
        "Change a platform user's password or email straight in the management database: no"
        " server and no current password needed (whoever runs this can reach the database).",
    )
    actions = platform.add_subparsers(dest="platform_command", required=True, metavar="ACTION")
    account_help = "the platform user to change (default: auth.platform_admin_email)"
    set_password = _command(
        actions,
        "set-password",
        "set a platform user's password",
        "Set a platform user's password (asked twice on a terminal, or read from standard input"
        " with --password-stdin). It must pass the password policy (docs/security.md). Every"
        " refresh token of the user is revoked. Before the first start (no platform user yet)"
        " it creates the platform admin with this password instead of `changeme`.",
    )
    set_password.add_argument("--email", help=account_help)
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the new password from the first line of standard input",
    )
    set_email = _command(
        actions,
        "set-email",
        "change a platform user's email (the login name)",
        "Change a platform user's email. Emails are unique whatever their case.",
    )
    set_email.add_argument("new_email", help="the new email")
    set_email.add_argument("--email", help=account_help)


def _new_password(args: argparse.Namespace) -> str | None:
    """The password for `platform set-password`: stdin's first line, or asked twice."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("rocketd: no terminal to ask on; use --password-stdin", file=sys.stderr)
        return None
    import getpass

    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        print("rocketd: the passwords differ; nothing changed", file=sys.stderr)
        return None
    return first


def _subparser_actions(sub: Any) -> list[Any]:
    """The sub-subcommand groups (e.g. `apps list|create|delete`) under `sub`'s commands."""
    return [
        action
        for parser in sub.choices.values()
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    ]


_PG_BINDIR_HELP = (
    "directory holding pg_dump and pg_restore (default: found automatically; their major "
    "version must equal the server's)"
)


def _backup_parsers(sub: Any) -> None:
    backup = sub.add_parser(
        "backup",
        help="write a backup archive of apps (databases, app settings and secrets, files)",
        description=(
            "Write one .tar archive (mode 0600) holding, per app, a pg_dump of its database, its"
            " management row (JWT secret included) and the files the local storage driver"
            " keeps, plus a manifest with a SHA-256 of every part. --all adds the platform users"
            " and settings. The archive holds secrets and password hashes: protect it."
        ),
    )
    backup.add_argument("apps", nargs="*", metavar="APP", help="the apps to back up")
    backup.add_argument(
        "--all", action="store_true", help="every app, plus the platform users and settings"
    )
    backup.add_argument(
        "-o",
        "--output",
        help="the archive to write (default: ./rocketd-backup-<what>-<UTC time>.tar); "
        "never overwritten",
    )
    backup.add_argument("--pg-bindir", help=_PG_BINDIR_HELP)
    restore = sub.add_parser(
        "restore",
        help="restore apps from a backup archive",
        description=(
            "Check every checksum of the archive first (a damaged or altered archive is refused"
            " and nothing changes), then recreate each app: its database (pg_restore), its"
            " management row and its files (written through the configured storage driver)."
            " Running servers start serving a restored app by themselves."
        ),
    )
    restore.add_argument("archive", help="the .tar written by `rocketd backup`")
    restore.add_argument("--app", help="restore only this app of the archive")
    restore.add_argument(
        "--as",
        dest="as_name",
        metavar="NEWNAME",
        help="restore the app under this name instead (it gets a new JWT secret)",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace apps that exist (they are deleted first, database and all); with"
        " --platform, also overwrite platform users and settings that exist",
    )
    restore.add_argument(
        "--platform",
        action="store_true",
        help="also restore the platform users and settings of an archive made with --all",
    )
    restore.add_argument("--pg-bindir", help=_PG_BINDIR_HELP)


def _summary(settings: Settings) -> str:
    db = (
        settings.database.masked_dsn()
        if settings.database.configured
        else (f"embedded PostgreSQL in {Path(settings.data_dir) / 'postgres'}")
    )
    source = settings.config_path or "defaults (no file)"
    return (
        f"config OK: file={source} listen={settings.server.host}:{settings.server.port} "
        f"database={db} data_dir={settings.data_dir} "
        f"background_work={'on' if settings.background_work else 'off'}"
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"rocketd {__version__}", file=out)
        return 0
    config_path = getattr(args, "config_sub", None) or args.config
    strict = bool(getattr(args, "strict", False))
    # Lines logged while the settings load are held back until logging is configured by them.
    with structlog.testing.capture_logs() as early_lines:
        try:
            settings = load_settings(config_path, strict=strict)
        except ConfigError as err:
            print(f"rocketd: configuration error: {err}", file=sys.stderr)
            return 1
    try:
        configure_logging(settings.log.level, settings.log.format, file=settings.log.file)
    except OSError as err:
        print(f"rocketd: cannot open log.file: {err}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        # Its report says what is unknown itself (on stdout, with the summary).
        _replay([line for line in early_lines if line.get("event") not in settings.unknown])
        print(_summary(settings), file=out)
        for problem in settings.unknown:
            print(f"warning: {problem}", file=out)
        return _run(_check_accounts(settings, out))
    _replay(early_lines)
    if args.command == "serve":
        return _serve_command(settings, args.workers)
    if args.command == "apps" and args.apps_command == "delete" and not args.yes:
        if not _confirm(f"Delete app {args.name} and drop its database? [y/N] "):
            print("aborted (use --yes to skip this question)", file=sys.stderr)
            return 2
    if args.command in ("export", "import", "diff"):
        return _run(_schema_command(settings, args, out))
    if args.command == "platform":
        password = _new_password(args) if args.platform_command == "set-password" else ""
        if password is None:
            return 2
        return _run(_platform_command(settings, args, password, out))
    if args.command == "backup" and bool(args.apps) == bool(args.all):
        print("rocketd: backup needs app names or --all (not both)", file=sys.stderr)
        return 2
    if args.command in ("backup", "restore"):
        return _run(_backup_command(settings, args, out))
    return _run(_apps_command(settings, args, out))


def _replay(lines: list[MutableMapping[str, Any]]) -> None:
    log = structlog.get_logger("rocketd")
    for line in lines:
        fields = dict(line)
        level = str(fields.pop("log_level", "info"))
        event = str(fields.pop("event", ""))
        getattr(log, level, log.info)(event, **fields)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(question).strip().lower() in ("y", "yes")


def _run(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(coro))
    return int(uvloop.run(coro))


def _serve_command(settings: Settings, workers: int | None) -> int:
    from rocketd.db.embedded import EmbeddedPostgresError
    from rocketd.workers import WorkerGroup, worker_count

    if workers is not None and not 0 <= workers <= 64:
        print("rocketd: --workers must be between 0 and 64", file=sys.stderr)
        return 2
    count = worker_count(settings.server.workers if workers is None else workers)
    # The resolved count, for what depends on it (the connection budget).
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, workers=count)
    )
    if count == 1:
        return _run(_serve(settings))

    def worker_main(settings: Settings, index: int, notifier: Any) -> int:
        return _run(_serve(settings, notifier))

    try:
        return WorkerGroup(settings, count, worker_main).run()
    except (EmbeddedPostgresError, OSError) as err:
        _cannot_start(err)
        return 1


async def _serve(settings: Settings, notifier: Any = None) -> int:
    import psycopg

    from rocketd.db.embedded import EmbeddedPostgresError
    from rocketd.runtime import StartRefused, serve

    try:
        return await serve(settings, notifier)
    except (EmbeddedPostgresError, psycopg.OperationalError, OSError, StartRefused) as err:
        _cannot_start(err)
        return 1


def _cannot_start(err: BaseException) -> None:
    """A startup failure the operator must fix: one line saying what, no traceback."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"rocketd: cannot start: {first_line}", file=sys.stderr)


async def _check_accounts(settings: Settings, out: TextIO) -> int:
    """Print the account problems found in the databases (a report: the exit code stays 0)."""
    import psycopg

    from rocketd.db import email_index
    from rocketd.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
    from rocketd.runtime import settings_for_embedded

    if not settings.database.configured:
        embedded = EmbeddedPostgres(Path(settings.data_dir))
        if not embedded.running:
            print("accounts: not checked (the embedded PostgreSQL is not running)", file=out)
            return 0
        try:
            settings = settings_for_embedded(settings, await asyncio.to_thread(embedded.start))
        except EmbeddedPostgresError as err:
            print(f"accounts: not checked ({err})", file=out)
            return 0

    def connect(dsn: str) -> Any:
        return psycopg.AsyncConnection.connect(dsn, connect_timeout=5)

    async def duplicates(dsn: str, table: str) -> list[email_index.CaseDuplicate]:
        async with await connect(dsn) as conn:
            if not await _has_table(conn, table):
                return []
            return await email_index.case_duplicates(conn, table)

    async def active_apps() -> list[tuple[str, str]]:
        async with await connect(settings.database.dsn()) as conn:
            if not await _has_table(conn, "_apps"):
                return []
            cur = await conn.execute(
                "select name, db_name from _apps where status = 'active' order by name"
            )
            return [(row[0], row[1]) for row in await cur.fetchall()]

    try:
        found = [("platform", await duplicates(settings.database.dsn(), "_platform_users"))]
        for name, db_name in await active_apps():
            found.append(
                (f"app {name}", await duplicates(settings.database.dsn(db_name), "_users"))
            )
    except psycopg.Error as err:
        print(f"accounts: not checked (database: {type(err).__name__})", file=out)
        return 0
    problems = [(where, dups) for where, dups in found if dups]
    for where, dups in problems:
        print(
            f"warning: {where}: accounts whose emails differ only in case (a login picks the"
            f" exact spelling; rename or delete one of each): {email_index.describe(dups)}",
            file=out,
        )
    if not problems:
        print("accounts: no emails that differ only in case", file=out)
    return 0


async def _has_table(conn: Any, table: str) -> bool:
    cur = await conn.execute("select to_regclass(%s) is not null", (table,))
    row = await cur.fetchone()
    return bool(row and row[0])


@asynccontextmanager
async def _management(settings: Settings) -> AsyncIterator[Any]:
    from rocketd.data_dir import DataDirLock
    from rocketd.db.embedded import EmbeddedPostgres
    from rocketd.runtime import (
        bootstrap_management,
        ensure_database,
        open_management_pool,
        settings_for_embedded,
    )

    embedded = None
    lock = DataDirLock(settings.data_dir)
    if not settings.database.configured:
        # Shared: a server holding the directory is used as it runs and never stopped here, and
        # no server starts on the directory while this command may own its PostgreSQL.
        lock.acquire_shared()
        embedded = EmbeddedPostgres(Path(settings.data_dir))
        dsn = await asyncio.to_thread(embedded.start)
        settings = settings_for_embedded(settings, dsn)
    try:
        await ensure_database(settings)
        pool = await open_management_pool(settings)
        try:
            await bootstrap_management(settings, pool)
            yield settings, pool
        finally:
            await pool.close()
    finally:
        if embedded is not None and embedded.owned and lock.held:
            await asyncio.to_thread(embedded.stop)
        lock.release()


async def _apps_command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from rocketd.platform import apps

    async with _management(settings) as (settings, pool):
        try:
            if args.apps_command == "list":
                rows = await apps.list_apps(pool)
                for row in rows:
                    print(f"{row.name}\t{row.status}\t{row.db_name}\t{row.display_name}", file=out)
                if not rows:
                    print("no apps", file=out)
            elif args.apps_command == "create":
                row = await apps.create_app(settings, pool, args.name, args.display_name, None)
                print(f"created app {row.name} (database {row.db_name})", file=out)
            elif args.apps_command == "delete":
                await apps.delete_app(settings, pool, args.name)
                print(f"deleted app {args.name}", file=out)
        except ApiError as err:
            print(f"rocketd: {err.message}", file=sys.stderr)
            return 1
    return 0


async def _platform_command(
    settings: Settings, args: argparse.Namespace, password: str, out: TextIO
) -> int:
    from rocketd.platform import account

    email = args.email or settings.auth.platform_admin_email
    async with _management(settings) as (settings, pool):
        try:
            auth = settings.auth
            if args.platform_command == "set-password":
                account.check_new_password(password, auth.password_min_length, email, "")
                if await account.seed_admin(pool, email, password, auth.bcrypt_cost):
                    print(f"created the platform admin {email} with this password", file=out)
                    return 0
            user = await account.find_user(pool, email)
            if args.platform_command == "set-password":
                revoked = await account.set_password(pool, user, password, auth.bcrypt_cost)
                print(
                    f"password of {user.email} changed; {revoked} refresh tokens revoked",
                    file=out,
                )
            else:
                renamed = await account.set_email(pool, user, args.new_email)
                print(f"email of {user.email} changed to {renamed.email}", file=out)
        except ApiError as err:
            print(f"rocketd: {err.message}", file=sys.stderr)
            return 1
    return 0


async def _schema_command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """`export APP` / `import APP FILE` / `diff APP FILE`, against the app's database directly
    (the server, if running, hears about an import through the metadata notification)."""
    import json

    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from rocketd.capabilities import INSTALLED
    from rocketd.capabilities.schema_io import diff as schema_diff
    from rocketd.capabilities.schema_io import document as schema_io
    from rocketd.db.app_schema import APP_PLAN
    from rocketd.db.migrations import apply_plan
    from rocketd.engine.admin import AdminCall
    from rocketd.engine.pipeline import AppContext
    from rocketd.engine.signals import SignalSender
    from rocketd.engine.snapshot import load_snapshot
    from rocketd.extensions import metadata_kinds, settings_sections
    from rocketd.platform import apps
    from rocketd.runtime import build_installation

    doc: object = None
    if args.command in ("import", "diff"):
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
            doc = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            print(f"rocketd: cannot read {args.file}: {err}", file=sys.stderr)
            return 1
    async with _management(settings) as (settings, pool):
        try:
            row = await apps.get_app(pool, args.app)
            dsn = settings.database.dsn(row.db_name)
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await apply_plan(conn, APP_PLAN)
                await conn.commit()
            app_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
            )
            await app_pool.open(wait=True)
            try:
                if args.command == "export":
                    result = await schema_io.export_app(
                        app_pool, metadata_kinds(INSTALLED), settings_sections(INSTALLED)
                    )
                elif args.command == "diff":
                    result = await schema_diff.diff_document(
                        app_pool,
                        AdminCall(row.name, settings),
                        doc,
                        metadata_kinds(INSTALLED),
                        settings_sections(INSTALLED),
                    )
                else:
                    call = AdminCall(row.name, settings)
                    installation = build_installation(INSTALLED)
                    signals = SignalSender(app_pool)

                    async def context_in(conn: psycopg.AsyncConnection[Any]) -> AppContext:
                        snapshot = await load_snapshot(conn, installation.parts)
                        return installation.context(row.name, app_pool, snapshot, signals)

                    saved = await schema_io.import_document(
                        app_pool,
                        call,
                        doc,
                        metadata_kinds(INSTALLED),
                        settings_sections(INSTALLED),
                        context_in,
                    )
                    await signals.flush()
                    result = saved.data
            finally:
                await app_pool.close()
        except ApiError as err:
            print(f"rocketd: {err.message}", file=sys.stderr)
            for detail in err.details or []:
                print(f"  {detail.message}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str), file=out)
    return 0


async def _backup_command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """`backup APP...|--all` and `restore ARCHIVE`, against the databases directly (running
    servers learn of restored apps through the app notification)."""
    from rocketd.db.dump_tools import DumpToolsError
    from rocketd.platform import backups
    from rocketd.platform.backup_archive import BackupError

    async with _management(settings) as (settings, pool):
        try:
            if args.command == "backup":
                output = Path(
                    args.output or backups.default_archive_name(args.apps, bool(args.all))
                )
                report = await backups.backup(
                    settings,
                    pool,
                    list(args.apps),
                    everything=bool(args.all),
                    output=output.absolute(),
                    pg_bindir=args.pg_bindir,
                )
                shown = ", ".join(report.apps) or "no apps"
                extra = " and the platform users and settings" if report.platform else ""
                print(
                    f"backup written to {report.path} ({report.size} bytes): {shown}{extra};"
                    f" {report.files} files from disk",
                    file=out,
                )
                for app, missing in report.missing_files.items():
                    print(
                        f"warning: {app}: {len(missing)} files have no bytes on disk and are not"
                        f" in the backup: {', '.join(missing)}",
                        file=sys.stderr,
                    )
            else:
                result = await backups.restore(
                    settings,
                    pool,
                    Path(args.archive),
                    only=args.app,
                    rename=args.as_name,
                    force=bool(args.force),
                    platform=bool(args.platform),
                    pg_bindir=args.pg_bindir,
                )
                for source, target in result.apps.items():
                    shown = target if source == target else f"{source} as {target}"
                    replaced = " (replaced the existing app)" if target in result.replaced else ""
                    print(f"restored app {shown}{replaced}", file=out)
                print(f"{result.files} files restored", file=out)
                if args.platform:
                    print(
                        f"platform: {result.platform_users} users and"
                        f" {result.platform_settings} settings written",
                        file=out,
                    )
        except (BackupError, DumpToolsError) as err:
            print(f"rocketd: {err}", file=sys.stderr)
            return 1
        except ApiError as err:
            print(f"rocketd: {err.message}", file=sys.stderr)
            return 1
    return 0
