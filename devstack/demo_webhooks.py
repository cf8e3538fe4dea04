"""The local stack's webhook destination: a CRM endpoint that sync delivers to, so `make run`
shows decisions arriving over HTTP the way a CRM that cannot read Kafka receives them.

It listens on the loopback (`LEADFLOW_DEV_WEBHOOKS_PORT`, 8089), verifies every request with
the Standard Webhooks library (a forged or stale one gets 401 and is shown as refused), and
shows one line per event. sync reads where to deliver from the destinations file the stack
writes (`destinations_yaml`): routing decisions and withdrawals, signed with `DEMO_SECRET`,
which is for this local stack only.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import orjson
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.http import HttpServer

DEMO_SECRET = "whsec_" + base64.b64encode(b"leadflow local stack demo secret").decode()
SECRET_VARIABLE = "LEADFLOW_DEMO_WEBHOOK_SECRET"
PATH = "/webhooks/leadflow"


def destinations_yaml(port: int) -> str:
    """sync's destinations file for the local stack: this receiver, decisions and withdrawals."""
    return (
        "# Written by the local stack (devstack/demo_webhooks.py): sync delivers here.\n"
        "destinations:\n"
        "  demo-crm:\n"
        f"    url: http://127.0.0.1:{port}{PATH}\n"
        "    events: [decisions, withdrawals]\n"
        f"    secret_env: {SECRET_VARIABLE}\n"
        "    timeout_s: 5\n"
    )


def describe(event: dict[str, Any]) -> str:
    """One line for an event received: what it is, for which lead, in which order."""
    data = event.get("data") or {}
    lead = str(data.get("lead_id", "?"))[:8]
    order = f"#{data['sequence']}" if data.get("sequence") else ""
    if event.get("type") == "routing.withdrawal":
        return f"withdrawal {order} lead {lead}: {data.get('route')} decision withdrawn ({data.get('cause')})"
    owner = data.get("owner") or {}
    target = owner.get("name") or data.get("queue") or data.get("track") or "?"
    return f"{data.get('route')} decision {order} lead {lead} -> {target}"


def app(show: Callable[[str], None]) -> Starlette:
    webhook = Webhook(DEMO_SECRET)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            webhook.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            show(f"[webhook] refused a request: {exc}")
            return Response(status_code=401)
        document = orjson.loads(body)
        events = document["data"] if document.get("type") == "batch" else [document]
        for event in events:
            show(f"[webhook] demo-crm received {describe(event)} (signature verified)")
        return Response(status_code=204)

    return Starlette(routes=[Route(PATH, receive, methods=["POST"])])


async def receive_webhooks(port: int, *, stop: asyncio.Event, show: Callable[[str], None]) -> None:
    """Serve the destination on 127.0.0.1:`port` until `stop`."""
    server = HttpServer(app(show), host="127.0.0.1", port=port,
                        setting="LEADFLOW_DEV_WEBHOOKS_PORT", graceful_s=1)  # fmt: skip
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
