"""POSTing to a destination: one connection pool per destination, each new connection checked
against the refused addresses (`addresses`), answers read only as far as sync keeps them.

httpcore (httpx's own transport layer) is used directly: it takes a network backend, which is
where the address a connection really goes to is decided. `GuardedBackend` resolves the host
itself, refuses when any of its addresses is refused (DNS rebinding: a name that resolved to a
public address when the file was loaded and to the metadata service now), and connects to an
address it checked; TLS still verifies the certificate against the URL's host name (httpcore
starts TLS with the origin's host, not the address). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpcore

from services.sync.addresses import first_refusal
from services.sync.retries import EXCERPT_CHARS


class RefusedAddress(OSError):
    """The destination's host resolves to an address sync may not reach."""


@dataclass(frozen=True)
class Answer:
    """A destination's answer: its status, `Retry-After`, and the start of its body. `status`
    None: no answer (`error` says why: a timeout, a refused connection, a refused address)."""

    status: int | None
    retry_after: str | None = None
    body: bytes = b""
    error: str | None = None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses `addresses.refusal` allows (module doc)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if (reason := first_refusal(addresses)) is not None:
            raise RefusedAddress(f"{host} resolves to {reason}")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
            except httpcore.ConnectTimeout as exc:
                error = exc
                break  # the time for this connection is spent
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("sync does not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class DestinationClient:
    """A destination's connections: at most `connections` at once (its lanes)."""

    def __init__(self, *, connections: int, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(),
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST `body`; never raises for what the destination or the network does."""
        limit = self._timeout_s
        timeouts = {"connect": limit, "read": limit, "write": limit, "pool": limit}
        try:
            async with asyncio.timeout(limit):
                async with self._pool.stream(
                    "POST",
                    url,
                    headers=[*headers.items(), ("content-length", str(len(body)))],
                    content=body,
                    extensions={"timeout": timeouts},
                ) as response:
                    kept = b""
                    if not 200 <= response.status < 300:
                        async for chunk in response.aiter_stream():
                            kept += chunk
                            if len(kept) >= EXCERPT_CHARS * 4:
                                break  # the rest is not kept (retries.excerpt)
                    retry_after = _header(response.headers, b"retry-after")
                    return Answer(status=response.status, retry_after=retry_after, body=kept)
        except (TimeoutError, httpcore.TimeoutException):
            return Answer(status=None, error=f"no answer within {limit:g}s")
        except RefusedAddress as exc:
            return Answer(status=None, error=f"refused: {exc}")
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Answer(status=None, error=f"connection failed: {reason}")

    async def close(self) -> None:
        await self._pool.aclose()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
