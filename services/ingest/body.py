"""Reading a request's body from a client that may be slow on purpose.

uvicorn waits for a body as long as the client keeps the connection open, so a client that
trickles a byte now and then holds a request (and, for imports, one of the few import slots)
forever. `paced_chunks` gives up with `TooSlow` when:
- no piece of the body arrives for `idle_timeout_s`;
- the whole body has not arrived within `deadline_s` (tracking calls: a few hundred KB at most);
- `pace` says the body is arriving too slowly on average (imports: large, but a real upload
  sends kilobytes per second, an attack a byte now and then).
The API answers 408 and closes the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request


class TooSlow(Exception):
    """The client sent its body too slowly; `str()` says how (for the 408's reason)."""


@dataclass(frozen=True)
class MinimumPace:
    """An upload must average `bytes_per_s` once `grace_s` has passed (the first seconds may be
    slow: a client opening a file, a connection warming up). Pure."""

    bytes_per_s: int
    grace_s: float

    def shortfall(self, *, received: int, elapsed_s: float) -> str | None:
        """None while the pace holds; else the reason."""
        if elapsed_s <= self.grace_s or received >= self.bytes_per_s * elapsed_s:
            return None
        return (
            f"the body arrived too slowly: {received} bytes in {elapsed_s:.0f} s "
            f"(at least {self.bytes_per_s} bytes/s are needed after the first "
            f"{self.grace_s:g} s)"
        )


async def paced_chunks(
    request: Request,
    *,
    idle_timeout_s: float,
    deadline_s: float | None = None,
    pace: MinimumPace | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; raises `TooSlow` (see the module doc)."""
    chunks = request.stream().__aiter__()
    started = clock()
    received = 0
    while True:
        wait_s = idle_timeout_s
        if deadline_s is not None:
            wait_s = min(wait_s, deadline_s - (clock() - started))
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            elapsed_s = clock() - started
            if deadline_s is not None and elapsed_s >= deadline_s:
                raise TooSlow(
                    f"the body did not arrive within {deadline_s:g} s ({received} bytes came)"
                ) from None
            raise TooSlow(
                f"no data for {idle_timeout_s:g} s ({received} bytes of the body came)"
            ) from None
        received += len(chunk)
        if pace is not None:
            reason = pace.shortfall(received=received, elapsed_s=clock() - started)
            if reason is not None:
                raise TooSlow(reason)
        yield chunk
