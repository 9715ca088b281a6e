"""SIGHUP on a real `rocketd serve`: the log file is reopened (after a logrotate-style rename),
the live settings take their new values, and the others are named as needing a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.databases import dsn_for
from tests.support.helpers import wait_until
from tests.support.processes import Instance, call, free_port, new_app_admin, ready

pytestmark = pytest.mark.e2e

NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
}


def config(log_file: Path, level: str, max_per_page: int, max_headers: int) -> str:
    return (
        f"log:\n  file: {log_file}\n  level: {level}\n"
        f"api:\n  max_per_page: {max_per_page}\n"
        f"server:\n  max_headers: {max_headers}\n"
    )


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_sighup_reopens_the_log_and_reloads_live_settings(
    pg_dsn: str, management_db: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "rocketd.log"
    cfg = tmp_path / "rocket.yaml"
    cfg.write_text(config(log_file, "info", 100, 128))
    inst = Instance(
        dsn_for(pg_dsn, management_db),
        free_port(),
        tmp_path / "stdout.log",
        {"ROCKET_CONFIG": str(cfg)},
    )
    try:
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: ready(http, inst), "instance ready", timeout=60)
            app, token = await new_app_admin(http, inst.base, "hup")
            api = f"{inst.base}/api/{app}"
            status, body = await call(http, "POST", api + "/_admin/entities", token, NOTE)
            assert status == 201, body
            for text in ("a", "b", "c"):
                assert (await call(http, "POST", api + "/note", token, {"text": text}))[0] == 201
            status, body = await call(http, "GET", api + "/note?per_page=50", token)
            assert (status, body["meta"]["per_page"], len(body["data"])) == (200, 50, 3)
            assert any(line["event"] == "listening" for line in lines(log_file))

            cfg.write_text(config(log_file, "debug", 2, 64))
            log_file.rename(tmp_path / "rocketd.log.1")  # what logrotate does
            inst.proc.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                return any(line["event"] == "reloaded: logs reopened" for line in lines(log_file))

            await wait_until(reloaded, "the reload line in the reopened log", timeout=20)
            new_lines = lines(log_file)
            [done] = [line for line in new_lines if line["event"] == "reloaded: logs reopened"]
            assert done["applied"] == ["log.level", "api.max_per_page"]
            [restart] = [line for line in new_lines if line["level"] == "warning"]
            assert restart["event"] == "reload: these settings changed but need a restart"
            assert restart["keys"] == ["server.max_headers"]
            old = lines(tmp_path / "rocketd.log.1")
            assert not any(line["event"].startswith("reload") for line in old)

            status, body = await call(http, "GET", api + "/note?per_page=50", token)
            assert (status, body["meta"]["per_page"], len(body["data"])) == (200, 2, 2)
            assert inst.proc.poll() is None
    finally:
        assert inst.stop() == 0, (tmp_path / "stdout.log").read_text()[-3000:]
