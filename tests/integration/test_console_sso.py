"""Single sign-on to the console through a real OpenID Connect provider (`oidc-provider-mock`,
an authlib-based provider serving discovery, the authorization code flow and signed ID
tokens over HTTP), in Debian's Chromium: the role comes from the provider's `groups` claim, a
person with no mapped group gets the default role, and a denied sign-in opens no session."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.async_api import Browser, Page

from tests.fixtures.pipeline import Pipeline


@pytest.fixture
def provider() -> Iterator[str]:
    people = [
        User(sub="ada-1", claims={"email": "ada@example.com", "name": "Ada Admin",
                                  "groups": ["staff", "revops-admins"]}),
        User(sub="vic-2", claims={"email": "vic@example.com", "name": "Vic Viewer",
                                  "groups": ["staff"]}),
    ]  # fmt: skip
    with run_server_in_thread(require_nonce=True, user_claims=people) as server:
        yield f"http://127.0.0.1:{server.server_port}"


async def sign_in_with_sso(page: Page, base: str, subject: str) -> None:
    await page.goto(f"{base}/funnel")
    await page.click("text=Sign in with single sign-on")
    await page.click(f"button[name=sub][value='{subject}']")  # the provider's own form


async def test_single_sign_on_gives_the_role_of_the_providers_groups(
    pipeline: Pipeline, browser: Browser, provider: str
) -> None:
    pipeline.addresses.service_env["console"] = {
        "LEADFLOW_CONSOLE_OIDC": json.dumps(
            {
                "metadata_url": f"{provider}/.well-known/openid-configuration",
                "client_id": "leadflow-console",
                "client_secret": "a-client-secret",
                "roles": {"revops-admins": "admin"},
                "default_role": "viewer",
            }
        )
    }
    await pipeline.start("console")
    base = f"http://127.0.0.1:{pipeline.addresses.console_port}"

    admin = await (await browser.new_context()).new_page()
    await sign_in_with_sso(admin, base, "ada-1")
    await admin.wait_for_url(f"{base}/funnel")
    assert "Ada Admin" in await admin.inner_text(".who")
    people = await admin.goto(f"{base}/admin/people")
    assert people is not None
    assert people.status == 200
    assert "ada@example.com" in await admin.inner_text("[data-test=people]")

    viewer = await (await browser.new_context()).new_page()
    await sign_in_with_sso(viewer, base, "vic-2")
    await viewer.wait_for_url(f"{base}/funnel")
    refused = await viewer.goto(f"{base}/admin/people")
    assert refused is not None
    assert refused.status == 403

    # Local accounts are off once single sign-on is set: the password form is gone.
    stranger = await (await browser.new_context()).new_page()
    await stranger.goto(f"{base}/sign-in")
    assert await stranger.locator("input[name=password]").count() == 0
    # Denying at the provider opens no session.
    await stranger.click("text=Sign in with single sign-on")
    await stranger.click("button[value=deny]")
    await stranger.wait_for_url(f"{base}/sign-in/sso/callback*")
    assert "single sign-on failed" in await stranger.inner_text("main")
    await stranger.goto(f"{base}/funnel")
    assert "/sign-in" in stranger.url
