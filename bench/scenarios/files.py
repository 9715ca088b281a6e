"""The `files` set: upload/download throughput against raw disk, memory during a big upload, and
schema import time.

transfer: uploads (`POST /_files/upload`, multipart streamed from the client) and downloads
          (`GET /_files/{id}`) of 1 MB and 50 MB files, next to raw disk write/read of the same
          sizes in the same run (Python, same filesystem as the server's upload directory; the
          write includes no fsync, like the server's). Peak RSS of the rocketd process is sampled
          every 5 ms during a 50 MB upload: it must stay flat (the file is never in memory).
import:   `POST /_admin/import` of a generated 50-entity schema (49 relations) into a fresh app,
          against creating the same metadata one admin request at a time.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.harness import Bench
from bench.processes import HOST, ServerProcess, http_json
from bench.report import Measurement, ScenarioResult, ratio

APP_NAME = "benchfiles"
MB = 1_000_000
CHUNK = 256 * 1024
SIZES = ((1, 30), (50, 4))  # (MB, repetitions)
RSS_FLAT_LIMIT_MB = 30.0
PLATFORM = {"email": "platform@localhost", "password": "changeme"}
ADMIN = {"email": "admin@localhost", "password": "changeme"}


def _token(port: int, path: str, creds: dict[str, str]) -> str:
    status, body = http_json(port, "POST", path, creds)
    if status != 200:
        raise RuntimeError(f"login failed: {status} {body}")
    return str(body["data"]["access_token"])


def _new_app(port: int, name: str) -> str:
    ptoken = _token(port, "/api/_platform/auth/login", PLATFORM)
    status, body = http_json(port, "POST", "/api/_platform/apps", {"name": name}, token=ptoken)
    if status not in (200, 201):
        raise RuntimeError(f"creating app {name} failed: {status} {body}")
    return _token(port, f"/api/{name}/auth/login", ADMIN)


def _payload(size: int) -> bytes:
    return os.urandom(size)


def _upload(port: int, token: str, content: bytes) -> str:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        view = memoryview(content)
        for start in range(0, len(content), CHUNK):
            yield bytes(view[start : start + CHUNK])
        yield tail

    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.putrequest("POST", f"/api/{APP_NAME}/_files/upload")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + len(content) + len(tail)))
        conn.endheaders()
        for piece in body():
            conn.send(piece)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload failed: {resp.status} {raw[:300]!r}")
    return str(json.loads(raw)["data"]["id"])


def _download(port: int, token: str, file_id: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request(
            "GET", f"/api/{APP_NAME}/_files/{file_id}", headers={"Authorization": f"Bearer {token}"}
        )
        resp = conn.getresponse()
        total = 0
        while chunk := resp.read(CHUNK):
            total += len(chunk)
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"download failed: {resp.status}")
    return total


def _measure(name: str, size_mb: int, times: list[float], params: dict[str, object]) -> Measurement:
    total = sum(times)
    ordered = sorted(times)
    return Measurement(
        name=name,
        tool="python",
        rate=size_mb * len(times) / total if total else 0.0,
        unit="MB/s",
        requests=len(times),
        avg_ms=total / len(times) * 1000,
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=ordered[-1] * 1000,
        errors=0,
        params=params,
    )


def _raw_disk(directory: Path, content: bytes, repeat: int) -> tuple[list[float], list[float]]:
    writes: list[float] = []
    reads: list[float] = []
    for i in range(repeat):
        path = directory / f"raw-{i}.bin"
        started = time.perf_counter()
        with path.open("wb") as out:
            view = memoryview(content)
            for start in range(0, len(content), CHUNK):
                out.write(view[start : start + CHUNK])
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        with path.open("rb") as src:
            while src.read(CHUNK):
                pass
        reads.append(time.perf_counter() - started)
        path.unlink()
    return writes, reads


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _server_pid(server: ServerProcess) -> int:
    proc: Any = getattr(server, "_proc", None)
    if proc is None:
        raise RuntimeError("server not started")
    return int(proc.pid)


def transfer(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "transfer", "file upload/download MB/s vs raw disk, RSS of a big upload"
    )
    raw_dir = bench.workdir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    measurements: list[Measurement] = []
    with bench.rocketd(storage_max_file_size=60 * MB) as server:
        token = _new_app(server.port, APP_NAME)
        for size_mb, repeat in SIZES:
            content = _payload(size_mb * MB)
            _upload(server.port, token, content)  # warm-up
            ups: list[float] = []
            downs: list[float] = []
            ids: list[str] = []
            for _ in range(repeat):
                started = time.perf_counter()
                ids.append(_upload(server.port, token, content))
                ups.append(time.perf_counter() - started)
            for file_id in ids:
                started = time.perf_counter()
                got = _download(server.port, token, file_id)
                downs.append(time.perf_counter() - started)
                if got != len(content):
                    result.failures.append(
                        f"download of {file_id}: {got} bytes, expected {len(content)}"
                    )
            writes, reads = _raw_disk(raw_dir, content, repeat)
            params: dict[str, object] = {"size_mb": size_mb, "repeat": repeat}
            up = _measure(f"upload {size_mb} MB", size_mb, ups, params)
            down = _measure(f"download {size_mb} MB", size_mb, downs, params)
            raw_w = _measure(f"raw disk write {size_mb} MB", size_mb, writes, params)
            raw_r = _measure(f"raw disk read {size_mb} MB", size_mb, reads, params)
            measurements += [up, down, raw_w, raw_r]
            result.ratios += [
                ratio(
                    f"upload / raw write, {size_mb} MB", up, raw_w, "share of raw disk write speed"
                ),
                ratio(
                    f"download / raw read, {size_mb} MB",
                    down,
                    raw_r,
                    "share of raw disk read speed",
                ),
            ]
        # Peak RSS during one 50 MB upload, sampled from /proc.
        pid = _server_pid(server)
        content = _payload(50 * MB)
        before = _rss_kb(pid)
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_kb(pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            _upload(server.port, token, content)
        finally:
            done.set()
            sampler.join()
        growth_mb = (peak - before) / 1024
        result.notes.append(
            f"rocketd RSS during a 50 MB upload: {before / 1024:.1f} MB before, peak "
            f"{peak / 1024:.1f} MB (+{growth_mb:.1f} MB); flat means well under the file size."
        )
        if growth_mb > RSS_FLAT_LIMIT_MB:
            result.failures.append(f"RSS grew {growth_mb:.1f} MB during a 50 MB upload")
        bench.stop(server)
    result.measurements = measurements
    result.notes += [
        "Client: Python http.client in the harness process, one request at a time, 256 KiB "
        "chunks; uploads send a Content-Length multipart body; downloads read 256 KiB chunks.",
        "Raw disk: the same sizes written (no fsync) and read back with Python file I/O in the "
        "same scratch directory; after a write the read usually comes from the page cache, as "
        "the server's downloads do.",
        "Rate = size x repetitions / total time; p50/p99 columns are per-transfer times.",
    ]
    return result


def _schema(entities: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": 1, "entities": [], "relations": []}
    for i in range(entities):
        fields = [
            {"name": "id", "type": "uuid"},
            {"name": "name", "type": "string", "required": True},
            {"name": "code", "type": "string", "unique": True},
            {"name": "amount", "type": "decimal", "precision": 2},
            {"name": "count", "type": "int", "default": 0},
            {"name": "data", "type": "json"},
            {"name": "created_at", "type": "timestamp", "auto": "create"},
        ]
        if i > 0:
            fields.append({"name": "parent_id", "type": "uuid", "nullable": True})
        doc["entities"].append(
            {
                "name": f"thing{i:02d}",
                "table": f"things{i:02d}",
                "primary_key": {"field": "id", "type": "uuid", "generated": True},
                "fields": fields,
            }
        )
        if i > 0:
            doc["relations"].append(
                {
                    "name": f"children{i:02d}",
                    "type": "one_to_many",
                    "source": f"thing{i - 1:02d}",
                    "target": f"thing{i:02d}",
                    "source_key": "id",
                    "target_key": "parent_id",
                }
            )
    return doc


def import_schema(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("import", "schema import of 50 entities vs one admin request each")
    doc = _schema(50)
    imports: list[float] = []
    singles: list[float] = []
    with bench.rocketd(server_max_body_size=8 * MB) as server:
        for round_ in range(3):
            token = _new_app(server.port, f"benchimp{round_}")
            started = time.perf_counter()
            status, body = http_json(
                server.port, "POST", f"/api/benchimp{round_}/_admin/import", doc, token=token
            )
            imports.append(time.perf_counter() - started)
            if status != 200 or body["data"]["summary"]["entities"] != 50:
                result.failures.append(f"import failed: {status} {str(body)[:300]}")
            token = _new_app(server.port, f"benchadm{round_}")
            started = time.perf_counter()
            for kind, items in (("entities", doc["entities"]), ("relations", doc["relations"])):
                for item in items:
                    status, body = http_json(
                        server.port,
                        "POST",
                        f"/api/benchadm{round_}/_admin/{kind}",
                        item,
                        token=token,
                    )
                    if status != 201:
                        result.failures.append(f"admin create failed: {status} {str(body)[:200]}")
            singles.append(time.perf_counter() - started)
        bench.stop(server)

    def timing(name: str, times: list[float]) -> Measurement:
        ordered = sorted(times)
        return Measurement(
            name=name,
            tool="python",
            rate=len(times) / sum(times),
            unit="schemas/s",
            requests=len(times),
            avg_ms=sum(times) / len(times) * 1000,
            p50_ms=ordered[len(ordered) // 2] * 1000,
            p99_ms=ordered[-1] * 1000,
            errors=0,
            params={"entities": 50, "relations": 49},
        )

    imp = timing("import 50 entities + 49 relations (one request)", imports)
    adm = timing("same metadata, 99 admin requests", singles)
    result.measurements = [imp, adm]
    result.ratios = [ratio("import / admin requests", imp, adm, "speed-up of one import")]
    result.notes = [
        "Each round uses a fresh app; the import validates everything, then creates 50 tables, "
        "their indexes and 49 foreign-key indexes in one transaction.",
    ]
    return result


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "transfer": transfer,
    "import": import_schema,
}
