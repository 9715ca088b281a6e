"""The HTTP server under the application: what happens before a request reaches a middleware.

aiohttp reads the request line and the headers of every request in its own per-connection
protocol (`web.RequestHandler`), before any middleware runs. This module replaces that protocol
with `Connection`, which

* answers requests aiohttp's parser refuses (a header over `server.max_header_size`, more than
  `server.max_headers` headers, a request line over `server.max_request_line`, malformed HTTP)
  in the contract's error shape, 431 / 414 / 400, and logs the kind of problem and the peer,
  never the bytes received (aiohttp's own answer echoes them and logs them, a bearer token
  included);
* closes a connection whose request headers are not complete `server.header_timeout` seconds
  after the first byte of the request (or after the connection was opened): a client trickling
  its headers cannot hold a connection. Idle keep-alive connections are closed by aiohttp after
  `server.keepalive_timeout`. A request body is not subject to the header timeout.

The size limits themselves are aiohttp's parser settings, passed by `create_app` (so the test
client has them too); `HttpRunner` adds the protocol, the header timeout and the keep-alive bound.
Only `rocketd serve` listens through `HttpRunner`.

What is aiohttp's and may move between its versions: the protocol has no public hook for "a
request's headers are complete"; `Connection` reads the protocol's queue of parsed requests
(`_messages`) for that, and the server's `_kwargs` and `_loop` to build the protocol the way
`web.Server` does. tests/e2e/test_http_limits.py checks all of it against a real server.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from rocketd.config import ServerSettings
from rocketd.errors import ApiError, BadRequest, HeadersTooLarge, InternalError, UriTooLong
from rocketd.http.keys import DRAINING
from rocketd.http.responses import json_body
from rocketd.logging import get_logger

__all__ = ["Connection", "HttpRunner", "parser_limits"]

log = get_logger("rocketd.http.server")

# The parser's message for a request over `max_headers` (the same in the C and Python parsers).
_TOO_MANY_HEADERS = "Too many headers"


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    if request.app[DRAINING].is_set():
        # The headers are already prepared when this signal runs: say it, then do it.
        response.headers[hdrs.CONNECTION] = "close"
        response.force_close()


def parser_limits(settings: ServerSettings) -> dict[str, int]:
    """aiohttp's request parser limits (`web.Application(handler_args=...)`) from the settings."""
    return {
        "max_line_size": settings.max_request_line,
        "max_field_size": settings.max_header_size,
        "max_headers": settings.max_headers,
    }


class Connection(web.RequestHandler):
    """aiohttp's protocol for one connection, with rocketd's parser errors and header timeout."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._partial_headers = False  # bytes of the next request's headers have arrived

    # ------------------------------------------------------------ header timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()  # the first request's headers are due from the start

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers():
            if data:
                self._partial_headers = True
                self._arm_header_timer()  # no-op while armed: the deadline counts from byte 1
        else:
            self._cancel_header_timer()  # the headers are complete (or a request is running)

    def request_started(self) -> None:
        """A parsed request is about to be handled (called by the server's request factory)."""
        self._in_request = True
        self._partial_headers = False
        self._cancel_header_timer()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_request = False

    def _awaiting_headers(self) -> bool:
        """No request is being handled and none is parsed and waiting: bytes that arrive now
        belong to the headers of the next request."""
        return not self._in_request and not self._messages

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self._loop.call_later(self._header_timeout, self._header_deadline)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers() or self.transport is None:
            return
        peer = self.peername
        # A connection that never sent a byte is a browser's preconnect as often as an attack.
        emit = log.info if self._partial_headers else log.debug
        emit(
            "closing a connection whose request headers did not arrive in time",
            peer=peer[0] if isinstance(peer, tuple) else None,
            header_timeout=self._header_timeout,
            partial=self._partial_headers,
        )
        self.force_close()

    # ------------------------------------------------------------ parser errors

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not parse (or an error no middleware caught).

        `message` and `exc` hold the bytes the client sent: they are neither answered nor logged.
        """
        if request.writer.output_size > 0:  # aiohttp's rule: a response has started, give up
            raise ConnectionError("the response has started; no room for an error body")
        if isinstance(exc, HttpProcessingError):
            err = self._parser_error(exc)
            # Limits hit are worth an operator's eye; garbage (scanners, TLS on the HTTP port) not.
            emit = log.debug if isinstance(err, BadRequest) else log.info
            emit(
                "malformed HTTP request refused",
                peer=request.remote,
                status=err.status,
                code=err.code,
                problem=err.message,
            )
        else:
            # A failure of rocketd's own code (the middlewares catch everything else).
            log.error(
                "request failed outside the middlewares",
                peer=request.remote,
                status=status,
                exc_info=exc,
            )
            err = InternalError()
            if status != HTTPStatus.INTERNAL_SERVER_ERROR:
                err = ApiError(HTTPStatus(status).phrase, status=status)
                err.code = "HTTP_ERROR"
        response = json_body(err.to_json(), err.status)
        response.force_close()
        return response

    def _parser_error(self, exc: HttpProcessingError) -> ApiError:
        if isinstance(exc, LineTooLong):
            # The only way to tell the request line from a header: the limit that was exceeded
            # (equal limits are taken for a header).
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_line_size and limit != self.max_field_size:
                return UriTooLong(f"Request line too long: the limit is {limit} bytes")
            return HeadersTooLarge(
                f"Request header too large: the limit is {self.max_field_size} bytes per header"
            )
        if exc.message.startswith(_TOO_MANY_HEADERS):
            return HeadersTooLarge(
                f"Too many request headers: the limit is {self.max_headers} headers"
            )
        return BadRequest()


class _Server(web.Server):
    """`web.Server` whose connections are `Connection`s."""

    def __init__(self, made: web.Server, header_timeout: float) -> None:
        factory = made.request_factory

        def tracked_request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            if isinstance(protocol, Connection):
                protocol.request_started()
            return factory(message, payload, protocol, writer, task)

        super().__init__(
            made.request_handler,
            request_factory=tracked_request,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
        self._header_timeout = header_timeout

    def __call__(self) -> web.RequestHandler:
        return Connection(
            self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs
        )


class HttpRunner(web.AppRunner):
    """`web.AppRunner` serving `app` through `Connection`, with the server settings' timeouts.

    Stopping is `drain()` then `cleanup()`: readiness turns false first while requests are still
    served (each response now says `Connection: close`, so keep-alive clients reconnect,
    elsewhere once their balancer saw the 503), then the listener closes, idle connections are
    closed, and in-flight requests get `server.shutdown_timeout` to finish.
    """

    def __init__(self, app: web.Application, settings: ServerSettings) -> None:
        super().__init__(
            app,
            access_log=None,
            shutdown_timeout=settings.shutdown_timeout,
            keepalive_timeout=settings.keepalive_timeout,
        )
        self._header_timeout = settings.header_timeout
        self.draining = app[DRAINING] = asyncio.Event()
        app.on_response_prepare.append(_close_when_draining)

    async def drain(self, delay: float) -> None:
        """Answer /ready with 503 and close each connection after its response, for `delay` s."""
        self.draining.set()
        if delay > 0:
            log.info("draining: not ready, still serving", drain_delay=delay)
            await asyncio.sleep(delay)

    async def _make_server(self) -> web.Server:
        return _Server(await super()._make_server(), self._header_timeout)
