"""Where a sign-in leads (`services.console.web.sign_in.local_path`): only to a path of the
console, never to another site (no open redirect through `next`)."""

from __future__ import annotations

import pytest
from starlette.responses import RedirectResponse

from services.console.web.sign_in import local_path


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/funnel",
        "/leads/lead-1",
        "/funnel?since=2026-01-01&source=website",  # with its filters
        "/speed#by-rep",
        "/leads/a%2Fb",
        "/leads/evil.com",  # a path that names a site is still a path
    ],
)
def test_a_path_of_the_console_is_kept(target: str) -> None:
    assert local_path(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,  # no `next`
        "",
        "//evil.com",  # protocol-relative: another site
        "//evil.com/funnel",
        "///evil.com",
        "https://evil.com",
        "http://evil.com/",
        "javascript:alert(1)",
        "evil.com",  # relative: not a path of the console
        "funnel",
        "/\\evil.com",  # browsers read a backslash as a slash
        "\\\\evil.com",
        "/\\/evil.com",
        "/funnel\\..\\..\\",
        " //evil.com",
    ],
)
def test_anything_else_leads_to_the_start_page(target: str | None) -> None:
    assert local_path(target) == "/"


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.com",  # browsers drop tabs and line breaks from a URL: //evil.com
        "/\n/evil.com",
        "/\r\n/evil.com",
    ],
)
def test_a_path_with_characters_browsers_drop_does_not_redirect_to_another_site(
    target: str,
) -> None:
    # local_path lets these through; the redirect percent-encodes them, so the browser gets a
    # path of the console (/%09/evil.com), never //evil.com.
    location = RedirectResponse(local_path(target), status_code=303).headers["location"]

    as_a_browser_reads_it = location.replace("\t", "").replace("\n", "").replace("\r", "")
    assert as_a_browser_reads_it.startswith("/")
    assert not as_a_browser_reads_it.startswith("//")
