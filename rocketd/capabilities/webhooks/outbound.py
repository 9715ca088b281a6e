"""One outbound webhook request, with the safety rules of upstream-gaps S14-S16.

* The target goes through the one outbound policy (`rocketd/net/outbound.py`): every address it
  resolves to must be global or inside `outbound.allow_networks` / `webhooks.allow_networks`, and
  the connection goes to the vetted address. Saving a webhook never resolves anything.
* Redirects are not followed; at most `max_response_bytes` of the response body are read.
* `{{env.NAME}}` resolves only names starting with `webhooks.env_prefix` (others become "").
* With `webhooks.secret` set, the body is signed: `X-Rocket-Signature: sha256=<hex HMAC-SHA256>`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from rocketd.capabilities.webhooks.model import ENV_TEMPLATE
from rocketd.config import WebhookSettings
from rocketd.net.outbound import AddressPolicy, RefusedTarget

SIGNATURE_HEADER: Final = "X-Rocket-Signature"
IDEMPOTENCY_HEADER: Final = "X-Rocket-Idempotency-Key"


@dataclass(frozen=True)
class Outcome:
    status: int  # 0 when no response
    body: str
    error: str  # "" on 2xx
    duration_ms: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class DeliveryPolicy:
    """What webhook requests may reach and how they are sent (from `webhooks.*` settings)."""

    def __init__(self, settings: WebhookSettings, allow_networks: Iterable[str] = ()) -> None:
        self.settings = settings
        self.addresses = AddressPolicy(
            (*allow_networks, *settings.allow_networks), hint="outbound.allow_networks"
        )

    def check_address(self, text: str) -> None:
        self.addresses.check_address(text)

    def resolve_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        prefix = self.settings.env_prefix

        def value(match: Any) -> str:
            name = str(match.group(1))
            return os.environ.get(name, "") if name.startswith(prefix) else ""

        return {k: ENV_TEMPLATE.sub(value, v) for k, v in headers.items()}

    def sign(self, body: bytes) -> str | None:
        secret = self.settings.secret
        if not secret:
            return None
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Sender:
    """An aiohttp session with the vetting resolver; one per dispatcher (and one for sync)."""

    def __init__(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = self.policy.addresses.connector(limit=0, ttl_dns_cache=10)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        idempotency_key: str,
        *,
        timeout: float,
    ) -> Outcome:
        settings = self.policy.settings
        started = time.monotonic()

        def done(status: int, text: str, error: str) -> Outcome:
            return Outcome(status, text, error, int((time.monotonic() - started) * 1000))

        request_headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key}
        request_headers.update(self.policy.resolve_headers(headers))
        signature = self.policy.sign(body)
        if signature is not None:
            request_headers[SIGNATURE_HEADER] = signature
        try:
            self.policy.addresses.check_host(urlsplit(url).hostname or "")
            client_timeout = aiohttp.ClientTimeout(
                total=timeout, connect=min(timeout, settings.connect_timeout)
            )
            async with self._get_session().request(
                method,
                url,
                data=body,
                headers=request_headers,
                allow_redirects=False,
                timeout=client_timeout,
            ) as resp:
                text = await _read_capped(resp, settings.max_response_bytes)
                error = "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
                return done(resp.status, text, error)
        except RefusedTarget as exc:
            return done(0, "", str(exc))
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, RefusedTarget):
                return done(0, "", str(cause))
            return done(0, "", f"connection failed: {exc}")
        except TimeoutError:
            return done(0, "", f"timed out after {timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return done(0, "", f"{type(exc).__name__}: {exc}")


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(min(65_536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")
