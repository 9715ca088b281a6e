"""The bare aiohttp baseline: one `GET /health` handler, on uvloop, access log off.

It is what rocketd's `GET /health` would cost with no framework of ours around it, so the ratio
rocketd/bare is the share of aiohttp's ceiling that rocketd keeps. Run it as
`python -m bench.hello_server --port N`; it exits 0 on SIGTERM or SIGINT. bench/floor_server.py
serves the same `/health` (and the data API's get and update) through `serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop
from aiohttp import web


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    return app


async def serve(host: str, port: int, app: web.Application | None = None) -> int:
    """Serve `app` (default: the /health-only one) until SIGTERM or SIGINT, access log off."""
    runner = web.AppRunner(app if app is not None else make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    return uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    raise SystemExit(main())
