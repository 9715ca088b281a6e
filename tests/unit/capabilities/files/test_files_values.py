"""Pure parts of the files API: filename cleaning, type sniffing, Content-Disposition, ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rocketd.capabilities.files.files import clean_filename, effective_mime, is_file_id, sniff
from rocketd.capabilities.files.routes import content_disposition
from rocketd.storage import LocalDriver, MissingObject, TooLarge, open_storage, write_object


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (None, "file"),
        ("", "file"),
        ("a/b/c.txt", "c.txt"),
        ("C:\\x\\y.doc", "y.doc"),
        ("bad\r\nname\x00.txt", "badname.txt"),
        ("  spaced.txt ", "spaced.txt"),
        ("e\u0301.txt", "\u00e9.txt"),  # NFC
        ("y" * 300, "y" * 255),
        ("z" * 300 + ".jpeg", "z" * 250 + ".jpeg"),
    ],
)
def test_clean_filename(raw: str | None, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_sniff_and_effective_mime() -> None:
    assert sniff(b"%PDF-1.7\n") == "application/pdf"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"  <!DOCTYPE html><p>") == "text/html"
    assert sniff(b"<?xml version='1.0'?><svg xmlns=''>") == "image/svg+xml"
    assert sniff(b"plain words") is None
    assert effective_mime("text/plain; charset=utf-8", b"plain") == "text/plain"
    assert effective_mime(None, b"plain") == "application/octet-stream"
    assert effective_mime("image/png", b"<html>") == "text/html"
    assert effective_mime("application/vnd.ms-excel", b"PK\x03\x04") == "application/vnd.ms-excel"
    assert effective_mime("text/plain\r\nX-Evil: 1", b"") == "application/octet-stream"


def test_content_disposition_is_safe_ascii() -> None:
    value = content_disposition('r\u00e9sum\u00e9 "final"\\.pdf', "application/pdf")
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert value.startswith('inline; filename="r_sum_ _final__.pdf"')
    assert value.endswith("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%5C.pdf")
    assert content_disposition("x.svg", "image/svg+xml").startswith("attachment;")


def test_is_file_id() -> None:
    canonical = "3f0b6a5e-2c1d-4d7e-9a43-51f0c8e2b7aa"
    assert str(is_file_id(canonical)) == canonical
    assert str(is_file_id(canonical.upper())) == canonical
    assert is_file_id("3f0b6a5e2c1d4d7e9a4351f0c8e2b7aa") is None
    assert is_file_id("{" + canonical + "}") is None
    assert is_file_id("nope") is None


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        await asyncio.sleep(0)
        yield b"a" * size


async def test_local_storage_write_limit_read_and_delete(tmp_path: Path) -> None:
    storage = LocalDriver(str(tmp_path)).for_app("app1")
    file_id = "3f0b6a5e-2c1d-4d7e-9a43-51f0c8e2b7aa"
    stored = await write_object(storage, file_id, _chunks(4, 1000), 4000)
    assert stored.size == 4000 and stored.head == b"a" * 512
    path = storage.local_file(stored.key)
    assert path is not None and path.read_bytes() == b"a" * 4000
    assert await storage.size(stored.key) == 4000
    assert b"".join([c async for c in storage.open_read(stored.key, 10, 3010)]) == b"a" * 3000
    listed = await storage.objects()
    assert list(listed) == [file_id] and listed[file_id].complete
    assert listed[file_id].key == stored.key
    await storage.delete(stored.key)
    assert await storage.objects() == {}
    assert await storage.size(stored.key) is None
    with pytest.raises(MissingObject):
        [c async for c in storage.open_read(stored.key)]
    with pytest.raises(TooLarge):
        await write_object(storage, file_id, _chunks(5, 1000), 4000)
    assert not (tmp_path / "app1" / file_id).exists()
    assert storage.local_file(str(tmp_path.parent / "elsewhere")) is None
    assert not storage.owns("postgres:" + file_id) and not storage.owns("relative/content")
    with pytest.raises(ValueError):
        await write_object(storage, "../../etc", _chunks(1, 1), 10)
    with pytest.raises(ValueError):
        LocalDriver(str(tmp_path)).for_app("../x")
    with pytest.raises(ValueError):
        open_storage("s3", str(tmp_path))
