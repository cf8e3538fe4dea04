"""The OpenAPI description of the tracking endpoints and of CRM feedback: request bodies (the
call models and `CrmFeedback`, with examples) and every answer a client can get. The handlers
parse bodies themselves (see `api.py`), so FastAPI cannot infer these; they are added to its
generated document here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.ingest.crm_feedback import MAX_REPORTS, PATH, FeedbackBatch
from services.ingest.tracking import CALLS, BatchRequest
from shared.contracts import CrmFeedback

ENDPOINTS: dict[str, str] = {
    "identify": "Identify a user: who they are and their traits",
    "track": "Record an action a user performed",
    "page": "Record a web page view",
    "screen": "Record an app screen view",
    "group": "Tie a user to a group (account, company) and record the group's traits",
    "alias": "Merge two identities: previousId becomes userId",
    "batch": "Send many calls of any type at once (all accepted, or none)",
}

_CONTEXT = {"ip": "84.17.52.103", "library": {"name": "analytics-python", "version": "2.4.0"}}
EXAMPLES: dict[str, dict[str, Any]] = {
    "identify": {
        "userId": "usr_48213",
        "anonymousId": "6f1c2d9e-3b7a-4c55-9e0d-2a8b41f7c3d1",
        "traits": {"email": "maria.gonzalez@northwind-logistics.com", "title": "VP Sales"},
        "context": _CONTEXT,
        "timestamp": "2026-03-02T09:14:03.120Z",
        "messageId": "ajs-next-1772442843120-2f6b9a04",
    },
    "track": {
        "userId": "usr_48213",
        "event": "Demo Requested",
        "properties": {"form": "demo-request", "plan_interest": "enterprise"},
        "context": _CONTEXT,
        "timestamp": "2026-03-02T09:15:40.318Z",
    },
    "page": {
        "anonymousId": "6f1c2d9e-3b7a-4c55-9e0d-2a8b41f7c3d1",
        "name": "Pricing",
        "category": "Product",
        "properties": {"path": "/pricing", "url": "https://www.lumenboard.io/pricing"},
    },
    "screen": {
        "userId": "usr_48213",
        "name": "Dashboard",
        "category": "App",
        "properties": {"variation": "dark"},
    },
    "group": {
        "userId": "usr_48213",
        "groupId": "acct_northwind",
        "traits": {"name": "Northwind Logistics", "employees": 850, "industry": "Logistics"},
    },
    "alias": {"previousId": "6f1c2d9e-3b7a-4c55-9e0d-2a8b41f7c3d1", "userId": "usr_48213"},
}
EXAMPLES["batch"] = {
    "batch": [
        {"type": "identify", **EXAMPLES["identify"]},
        {"type": "track", **EXAMPLES["track"]},
        {"type": "page", **EXAMPLES["page"]},
    ],
    "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    "sentAt": "2026-03-02T09:15:41.000Z",
}

_ERROR = {
    "type": "object",
    "properties": {"success": {"const": False}, "error": {"type": "string"}},
}
RESPONSES: dict[str, Any] = {
    "200": {
        "description": "Every event of the request is acknowledged by the broker.",
        "content": {"application/json": {"example": {"success": True}}},
    },
    "400": {
        "description": "Invalid body: each reason names the field (and batch index).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "success": {"const": False},
                        "errors": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "example": {
                    "success": False,
                    "errors": ["batch[3]: userId or anonymousId is required"],
                },
            }
        },
    },
    "401": {
        "description": "Missing or unknown write key.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "403": {
        "description": "The write key lacks the `track` scope (e.g. a key for lead lists only).",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "408": {
        "description": "The body arrived too slowly; the connection is closed.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "429": {
        "description": "The rate limit of the client address or of the write key is exceeded, "
        "or the address sent too many unknown keys; retry after `Retry-After` s.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": _ERROR}},
    },
    "503": {
        "description": "The broker did not acknowledge; retry (same messageId) after "
        "`Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": _ERROR}},
    },
}


FEEDBACK_SUMMARY = (
    "Report what sales did with leads (a CRM, with a key holding the `feedback` scope): one "
    "report or a batch, onto crm.feedback"
)
FEEDBACK_EXAMPLES: dict[str, Any] = {
    "one report": {
        "summary": "A rep accepted a lead routed to them (by lead_id)",
        "value": {
            "feedback_id": "sf-task-00T5g00000Lk3QmEAJ",
            "lead_id": "3f2b8c1e-7d4a-4e9b-a6c2-5b1d9f0e8a47",
            "outcome": "accepted",
            "owner_id": "rep-grace",
            "at": "2026-03-02T09:18:52Z",
        },
    },
    "a batch": {
        "summary": f"Up to {MAX_REPORTS:,} reports, all accepted or none",
        "value": {
            "batch": [
                {
                    "feedback_id": "hs-note-48120937561",
                    "email": "jonas.weber@gmail.com",
                    "outcome": "disqualified",
                    "reason": "student, no buying role",
                    "owner_id": "rep-alan",
                    "at": "2026-03-04T10:05:17.250+01:00",
                },
                {
                    "feedback_id": "sf-opp-0065g00000Xy9ZbAAJ-closed",
                    "lead_id": "3f2b8c1e-7d4a-4e9b-a6c2-5b1d9f0e8a47",
                    "outcome": "won",
                    "reason": "Closed Won: Enterprise plan, 3-year term",
                    "owner_id": "rep-grace",
                    "at": "2026-04-17T15:42:00Z",
                },
            ]
        },
    },
}
FEEDBACK_RESPONSES: dict[str, Any] = {
    **RESPONSES,
    "200": {
        "description": "Every report of the request is acknowledged by the broker, on "
        "crm.feedback. Resending a report (same feedback_id) is safe: it is applied once.",
        "content": {"application/json": {"example": {"success": True}}},
    },
    "400": {
        **RESPONSES["400"],
        "description": "Invalid body: each reason names the field (and batch index); a batch "
        "with one invalid report is refused whole.",
        "content": {
            "application/json": {
                **RESPONSES["400"]["content"]["application/json"],
                "example": {
                    "success": False,
                    "errors": [
                        "batch[0]: at: timestamp must carry a time zone (ISO-8601 with offset "
                        "or Z)",
                        "batch[2]: feedback needs lead_id or email",
                    ],
                },
            }
        },
    },
    "403": {
        "description": "The write key lacks the `feedback` scope (e.g. a website's key).",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "413": {
        "description": f"The body is larger than 500 KB, or a batch holds more than "
        f"{MAX_REPORTS:,} reports: send them in several requests.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "429": {
        **RESPONSES["429"],
        "description": "The rate limit of the write key (a report counts as an event) or of "
        "the client address is exceeded, or the address sent too many unknown keys; retry "
        "after `Retry-After` s.",
    },
    "503": {
        **RESPONSES["503"],
        "description": "The broker did not acknowledge; resend the same reports (same "
        "feedback_ids) after `Retry-After` seconds.",
    },
}


def _models() -> dict[str, type[BaseModel]]:
    return {**CALLS, "batch": BatchRequest}


def document_bodies(app: FastAPI) -> None:
    """Replace `app.openapi` with FastAPI's document plus the tracking bodies and answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        models = _models()
        documented: list[type[BaseModel]] = [*models.values(), CrmFeedback, FeedbackBatch]
        names, definitions = models_json_schema(
            [(model, "validation") for model in documented],
            ref_template="#/components/schemas/{model}",
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(definitions.get("$defs", {}))
        document["components"]["securitySchemes"] = {
            "writeKey": {"type": "http", "scheme": "basic", "description": "write key as user"}
        }
        for endpoint, model in models.items():
            operation = document["paths"][f"/v1/{endpoint}"]["post"]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": names[(model, "validation")],
                        "example": EXAMPLES[endpoint],
                    }
                },
            }
            operation["responses"] = RESPONSES
            operation["security"] = [{"writeKey": []}]
        feedback = document["paths"][PATH]["post"]
        feedback["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            names[(CrmFeedback, "validation")],
                            names[(FeedbackBatch, "validation")],
                        ]
                    },
                    "examples": FEEDBACK_EXAMPLES,
                }
            },
        }
        feedback["responses"] = FEEDBACK_RESPONSES
        feedback["security"] = [{"writeKey": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
