"""The data-directory lock: one server per directory, commands only beside no server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rocketd.data_dir import DataDirLock, DataDirLocked


def test_a_second_server_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "data")
    first.acquire_exclusive()
    try:
        with pytest.raises(
            DataDirLocked, match=rf"in use by another rocketd server \(pid {os.getpid()}\)"
        ):
            DataDirLock(tmp_path / "data").acquire_exclusive()
    finally:
        first.release()
    again = DataDirLock(tmp_path / "data")
    again.acquire_exclusive()  # released: free again
    again.release()


def test_commands_share_the_lock_but_not_with_a_server(tmp_path: Path) -> None:
    server = DataDirLock(tmp_path)
    server.acquire_exclusive()
    command = DataDirLock(tmp_path)
    assert command.acquire_shared() is False and not command.held
    server.release()
    assert command.acquire_shared() is True
    other = DataDirLock(tmp_path)
    assert other.acquire_shared() is True
    with pytest.raises(DataDirLocked, match="a rocketd command"):
        DataDirLock(tmp_path).acquire_exclusive()
    command.release()
    other.release()


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    lock.acquire_exclusive()
    assert (tmp_path / "rocketd.lock").stat().st_mode & 0o777 == 0o600
    lock.release()
