"""console settings (LEADFLOW_CONSOLE_*)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS
from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
"""Each role may do what the ones before it may: a viewer sees, an editor also changes rules and
routing (the rules issue), an admin also manages people and reads the audit log."""


class OidcSettings(BaseModel):
    """Sign-in through an OpenID Connect provider (any standard one: Keycloak, Okta, Entra ID,
    Google Workspace, Dex...). `metadata_url`: its discovery document
    (`https://issuer/.well-known/openid-configuration`). A person's role comes from the claim
    `role_claim` (a string or a list, e.g. groups) through `roles` (claim value -> role, the
    highest one found wins), else `default_role`; None refuses people with no mapped value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata_url: AnyHttpUrl
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str = "openid email profile"
    role_claim: str = "groups"
    roles: dict[str, Role] = Field(default_factory=dict)
    default_role: Role | None = "viewer"
    label: str = Field(default="Sign in with single sign-on", min_length=1)


class ServiceEndpoint(BaseModel):
    """Another service's address as the console reaches it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: AnyHttpUrl


class ConsoleSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_CONSOLE_", **SERVICE_SOURCES)

    health_port: int = 8084
    # The pages and their JSON API, for people (signed in): behind an Ingress with TLS in a
    # cluster (deploy/), plain HTTP on the loopback of the local stack.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8088, ge=0, le=65535)
    # Signs the session and CSRF cookies. Required: a deployment sets it from a Secret.
    secret_key: SecretStr = Field(min_length=1)
    # Cookies only over HTTPS (on in a cluster behind TLS; the local stack serves plain HTTP).
    secure_cookies: bool = True
    # The address people reach the console at (e.g. https://leadflow.example.com), for the
    # single sign-on callback behind an Ingress; unset: the address of each request.
    public_url: AnyHttpUrl | None = None
    session_max_age_s: int = Field(default=12 * 3600, ge=60)
    oidc: OidcSettings | None = None
    # Local accounts (username and password, argon2-hashed) are for development and for a
    # first admin before single sign-on is set up; off when `oidc` is set unless kept on here.
    local_accounts: bool | None = None
    # score's API (a lead's explanation: its ledger, identity history, likelihood), with a
    # token of a client holding `leads:read` (LEADFLOW_API_CLIENTS of score).
    # Its rules editor also asks score (`/v1/rules`: rules:read, rules:simulate,
    # rules:publish) with the same token.
    score_api_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8092")
    score_api_token: SecretStr | None = None
    # router's API (the routing editor and reps' availability: routing:read,
    # routing:simulate, routing:publish), with a token of a client holding those scopes.
    router_api_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8093")
    router_api_token: SecretStr | None = None
    # The health page reads each service's own /metrics (its health port): name -> base URL.
    metrics_urls: dict[str, AnyHttpUrl] = Field(
        default_factory=lambda: {
            name: AnyHttpUrl(f"http://127.0.0.1:{port}")
            for name, port in (
                ("ingest", 8080),
                ("enrich", 8081),
                ("score", 8082),
                ("router", 8083),
                ("console", 8084),
            )
        }
    )

    # Housekeeping (`housekeeping.py`): every `housekeeping_interval_s`, one replica at a time.
    # An erased lead is remembered (`console.erased_leads`, hashes of lead ids) this long:
    # longer than the longest topic retention (30 days, 31 with a segment left open) and a
    # margin, so a replay of a topic from its earliest offset still finds the lead erased and
    # drops its messages instead of bringing the lead back. (The leads themselves are kept
    # while they are leads, as in score: RevOps look any of them up; an erasure removes one.)
    erased_leads_retention_days: float = Field(default=45, ge=TOPICS_KEEP_AT_MOST_DAYS)
    housekeeping_interval_s: float = Field(default=3600, gt=0)

    @property
    def uses_local_accounts(self) -> bool:
        return self.local_accounts if self.local_accounts is not None else self.oidc is None

    @model_validator(mode="after")
    def _some_way_to_sign_in(self) -> Self:
        if not self.uses_local_accounts and self.oidc is None:
            raise ValueError(
                "nobody could sign in: set LEADFLOW_CONSOLE_OIDC (single sign-on) or leave "
                "LEADFLOW_CONSOLE_LOCAL_ACCOUNTS on"
            )
        return self
