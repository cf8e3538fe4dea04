"""Server-rendered pages: Jinja2 templates (autoescaped), with what every page needs (the
signed-in person, the CSRF token for its forms, the navigation), and the few filters the
numbers need. Charts are drawn in the browser by the vendored Chart.js from data the page
embeds as JSON (`tojson`, which escapes what could end a script element)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

NO_VALUE = "\u2013"  # an en dash: nothing to show
NAVIGATION = (
    ("/funnel", "Funnel", "viewer"),
    ("/speed", "Speed-to-lead", "viewer"),
    ("/leads", "Leads", "viewer"),
    ("/rules", "Rules", "viewer"),
    ("/routing", "Routing", "viewer"),
    ("/health", "Health", "viewer"),
    ("/admin/people", "People", "admin"),
    ("/admin/audit", "Audit log", "admin"),
)


def duration(seconds: float | None) -> str:
    """A duration as people read it: 850 ms, 12 s, 4.2 min, 3.1 h, 12 d."""
    if seconds is None or math.isnan(seconds):
        return NO_VALUE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def ms(value: float | None) -> str:
    """A duration in milliseconds, as `duration` shows it."""
    return duration(None if value is None else value / 1000)


def share(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.1f}%"


def when(value: datetime | None) -> str:
    return NO_VALUE if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


class Pages:
    def __init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.filters.update(duration=duration, ms=ms, share=share, when=when)

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        person = getattr(request.state, "person", None)
        csrf = request.scope.get("csrftoken")
        # what the last change did, said once on the page it leads to
        flash = request.session.pop("flash", None) if "session" in request.scope else None
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "person": person,
                "csrftoken": csrf() if callable(csrf) else "",
                "navigation": [
                    (path, label)
                    for path, label, role in NAVIGATION
                    if person is not None and person.may(role)
                ],
                "path": request.url.path,
                "flash": flash,
                **context,
            },
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    def refusal(self, request: Request, status: int, reason: str) -> HTMLResponse:
        return self.render(request, "refused.html", status=status, reason=reason)
