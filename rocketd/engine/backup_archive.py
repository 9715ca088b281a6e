"""The backup archive format: one uncompressed tar, written once and checked whole before use.

    manifest.json               what is inside: versions, apps, and every member's SHA-256 and size
    manifest.json.sha256        the SHA-256 of manifest.json
    apps/<app>/app.json         the app's management row, its JWT secret included
    apps/<app>/database.dump    `pg_dump --format=custom` of the app database
    apps/<app>/files/<file id>  bytes of the app's files kept by the `local` storage driver
    platform.json               (`--all` only) platform users (password hashes) and settings

`ArchiveWriter` writes `<path>.part` with mode 0600 (the archive holds secrets) and renames it
into place when complete; `verified_archive` opens one and checks every member against the
manifest before handing it out, so a restore reads only bytes that were checked. Members are read
by name from the open file and streamed: never extracted to paths the archive chooses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from rocketd import __version__

FORMAT: Final = "rocketd-backup"
FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
MANIFEST_SUM: Final = "manifest.json.sha256"
PLATFORM: Final = "platform.json"
READ_SIZE: Final = 1024 * 1024
_MEMBER_RE: Final = re.compile(
    r"^(platform\.json"
    r"|apps/[a-z][a-z0-9_]*/(app\.json|database\.dump"
    r"|files/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))$"
)


class BackupError(Exception):
    """A backup or restore that cannot be done; the text says why and what to do."""


def app_member(app: str, part: str) -> str:
    """The member name of one part of an app: `app.json`, `database.dump`, `files/<id>`."""
    return f"apps/{app}/{part}"


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (tarfile reads members from file objects)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        return data


class ArchiveWriter:
    """A tar written to `<path>.part` (0600, never over an existing file) and renamed into
    place by `finish`; `discard` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        if path.exists():
            raise BackupError(f"{path} exists already; choose another --output")
        try:
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise BackupError(
                f"{self.partial} exists (another backup writing it, or a leftover): remove it"
            ) from None
        except OSError as exc:
            raise BackupError(f"cannot write {self.partial}: {exc.strerror}") from None
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self.members: dict[str, dict[str, Any]] = {}

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(time.time())
        return info

    def add_bytes(self, name: str, data: bytes) -> None:
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        self.members[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            hashing = _Hashing(source)
            self._tar.addfile(self._info(name, size), hashing)
        self.members[name] = {"sha256": hashing.digest.hexdigest(), "size": size}

    def finish(self, manifest: dict[str, Any]) -> None:
        manifest["members"] = dict(sorted(self.members.items()))
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._tar.addfile(self._info(MANIFEST, len(text)), io.BytesIO(text))
        checksum = (hashlib.sha256(text).hexdigest() + "\n").encode()
        self._tar.addfile(self._info(MANIFEST_SUM, len(checksum)), io.BytesIO(checksum))
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        self._tar.close()
        self._file.close()
        self.partial.unlink(missing_ok=True)


@dataclass
class Archive:
    """An open archive; after `verify_archive`, every member is present, unaltered and named as
    expected, and the restore reads from this same open file."""

    path: Path
    tar: tarfile.TarFile = field(repr=False)
    members: dict[str, tarfile.TarInfo] = field(repr=False)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def app_names(self) -> list[str]:
        return [str(a["name"]) for a in self.manifest["apps"]]

    def read(self, name: str) -> bytes:
        handle = self.tar.extractfile(self.members[name])
        assert handle is not None
        return handle.read()

    def stream(self, name: str) -> Iterator[bytes]:
        handle = self.tar.extractfile(self.members[name])
        assert handle is not None
        while chunk := handle.read(READ_SIZE):
            yield chunk


def _corrupt(path: Path, problem: str) -> BackupError:
    return BackupError(f"{path} is not a usable rocketd backup: {problem}; nothing was restored")


@contextmanager
def verified_archive(path: Path) -> Iterator[Archive]:
    """Open the archive and check it whole: manifest checksum, every member's SHA-256 and size,
    and no member the manifest does not list. Raises `BackupError` on any difference."""
    try:
        tar = tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise BackupError(f"{path} does not exist") from None
    except (tarfile.TarError, OSError) as exc:
        raise _corrupt(path, f"not a tar archive ({exc})") from None
    with tar:
        try:
            found = {m.name: m for m in tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _corrupt(path, f"the archive is damaged ({exc})") from None
        for name, member in found.items():
            if not member.isreg():
                raise _corrupt(path, f"{name} is not a regular file")
        if MANIFEST not in found or MANIFEST_SUM not in found:
            raise _corrupt(path, "no manifest")
        archive = Archive(path, tar, found)
        try:
            _verify(archive)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _corrupt(path, f"the archive is damaged ({exc})") from None
        yield archive


def _verify(archive: Archive) -> None:
    path = archive.path
    text = archive.read(MANIFEST)
    expected = archive.read(MANIFEST_SUM).decode("ascii", "replace").strip()
    if hashlib.sha256(text).hexdigest() != expected:
        raise _corrupt(path, "the manifest does not match its checksum")
    try:
        manifest = json.loads(text)
    except ValueError:
        raise _corrupt(path, "the manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupt(path, "the manifest is not a rocketd backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} has backup format {manifest.get('format_version')}; this rocketd "
            f"({__version__}) reads format {FORMAT_VERSION}"
        )
    listed: dict[str, dict[str, Any]] = manifest["members"]
    extra = sorted(set(archive.members) - set(listed) - {MANIFEST, MANIFEST_SUM})
    if extra:
        raise _corrupt(path, f"members not in the manifest: {', '.join(extra[:5])}")
    for name, expect in listed.items():
        if not _MEMBER_RE.match(name):
            raise _corrupt(path, f"unexpected member name {name!r}")
        member = archive.members.get(name)
        if member is None:
            raise _corrupt(path, f"{name} is missing")
        digest = hashlib.sha256()
        for chunk in archive.stream(name):
            digest.update(chunk)
        if member.size != expect["size"] or digest.hexdigest() != expect["sha256"]:
            raise _corrupt(path, f"{name} does not match its checksum")
    for app in manifest["apps"]:
        for part in ("app.json", "database.dump"):
            if app_member(app["name"], part) not in listed:
                raise _corrupt(path, f"{app_member(app['name'], part)} is missing")
    archive.manifest = manifest
