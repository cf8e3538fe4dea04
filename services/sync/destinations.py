"""The destinations file (`LEADFLOW_SYNC_DESTINATIONS_FILE`): where sync delivers, what, and how.

```yaml
destinations:
  hubspot:                                   # the name metrics and commands use
    url: https://hooks.example.com/leadflow
    events: [decisions, withdrawals, lifecycle, erasures]
    routes: [sdr, nurture]                   # decisions and withdrawals: these routes only
    stages: [mql, sql]                       # lifecycle: changes to these stages only
    secret_env: HUBSPOT_WEBHOOK_SECRET       # the variable holding the whsec_... secret
    headers: {X-Api-Key: {env: HUBSPOT_KEY}, X-Source: leadflow}
    batch_size: 1                            # events per request
    timeout_s: 10
    rate_limit_per_s: 5                      # requests per second (unset: no limit)
    max_attempts: 12                         # then the event goes to the dead letters
    concurrency: 4                           # lanes: a lead's events stay in one, in order
    backoff_base_s: 1                        # retries wait up to base * 2^(attempt-1) ...
    backoff_cap_s: 300                       # ... and never more than this
```

The file holds no secret: a destination's Standard Webhooks secret and any header value marked
`{env: NAME}` come from environment variables, read when the file is loaded, and are kept as
`SecretStr` (never logged, never in a `repr`). A bad file stops the start (exit 2) with one line
naming the file and each field at fault, `destinations.<name>.<field>` (and its line where
validation found it): a URL that is not http(s), carries a user or password (put credentials in
`headers`), or whose host is or resolves to a refused address (`addresses`: link-local, such as
the cloud's metadata service, or unspecified; loopback is allowed); a secret variable that is
unset or not a `whsec_` secret; a header sync sets itself.
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from services.sync.addresses import first_refusal, literal_address, refusal
from shared.config_files import ConfigFileError, load_yaml_model
from shared.contracts import Stage

DEFAULT_DESTINATIONS_FILE = Path(__file__).parent / "config" / "destinations.yaml"

EventKind = Literal["decisions", "withdrawals", "lifecycle", "erasures"]
EVENT_KINDS: tuple[EventKind, ...] = ("decisions", "withdrawals", "lifecycle", "erasures")
Route = Literal["sdr", "nurture"]
ROUTES: tuple[Route, ...] = ("sdr", "nurture")

DestinationName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]

# Headers sync writes itself: a destination's `headers` may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "transfer-encoding",
        "connection",
    }
)


class DestinationsFileError(ConfigFileError):
    """A destinations file that cannot be used (the shell reports it in one line, exit 2)."""


class FromEnv(BaseModel):
    """A header value read from the environment variable `env`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str = Field(min_length=1)


class DestinationConfig(BaseModel):
    """One destination as the file writes it (module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[EventKind] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=lambda: list(ROUTES), min_length=1)
    stages: list[Stage] | None = None
    secret_env: str = Field(min_length=1)
    headers: dict[str, str | FromEnv] = Field(default_factory=dict)
    batch_size: int = Field(default=1, ge=1, le=500)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=12, ge=1)
    concurrency: int = Field(default=4, ge=1, le=64)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url_to_an_allowed_host(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must be an http:// or https:// URL, not {parts.scheme or url!r}")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("carries a user or password: put credentials in `headers`")
        try:
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        address = literal_address(parts.hostname)
        if address is not None and (reason := refusal(address)) is not None:
            raise ValueError(f"refused: {reason}")
        return url

    @field_validator("headers")
    @classmethod
    def _no_header_sync_sets(cls, headers: dict[str, str | FromEnv]) -> dict[str, str | FromEnv]:
        if clash := sorted(name for name in headers if name.lower() in RESERVED_HEADERS):
            raise ValueError(f"sync sets {', '.join(clash)} itself")
        return headers


class DestinationsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    destinations: dict[DestinationName, DestinationConfig] = Field(default_factory=dict)


@dataclass(frozen=True)
class Destination:
    """A destination ready to deliver to: its configuration, its secret and its headers'
    values (read from the environment; `SecretStr`, so a `repr` shows none of them)."""

    name: str
    config: DestinationConfig
    secret: SecretStr = field(repr=False)
    headers: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    @property
    def origin(self) -> str:
        """The URL's scheme, host and port: what may be shown (a path or query may carry a
        token)."""
        parts = urlsplit(self.config.url)
        return f"{parts.scheme}://{parts.netloc}"

    def wants(self, kind: EventKind, *, route: str | None, stage: str | None) -> bool:
        """Whether an event of `kind` (of `route`, or changing to `stage`) goes here."""
        if kind not in self.config.events:
            return False
        if kind in ("decisions", "withdrawals"):
            return route in self.config.routes
        if kind == "lifecycle" and self.config.stages is not None:
            return stage in self.config.stages
        return True


Resolve = Callable[[str], list[str]]
"""A host name's addresses (getaddrinfo's, as text); raises OSError when it does not resolve."""


def resolve_host(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


def load_destinations(
    path: Path,
    environ: Mapping[str, str],
    *,
    resolve: Resolve | None = resolve_host,
    with_secrets: bool = True,
) -> list[Destination]:
    """The destinations of `path`, checked (module doc); raises `DestinationsFileError`.

    `resolve`: how host names are looked up (None: not at all). A name that does not resolve
    now is not refused (the CRM's DNS may be away for a moment): each connection checks again.
    `with_secrets=False` skips the secrets and header variables (an operator command that only
    lists the destinations)."""
    parsed = load_yaml_model(path, DestinationsFile, error=DestinationsFileError)
    problems: list[str] = []
    destinations = []
    for name, config in sorted(parsed.destinations.items()):
        where = f"destinations.{name}"
        host = urlsplit(config.url).hostname or ""
        if resolve is not None and literal_address(host) is None:
            try:
                addresses = resolve(host)
            except OSError:
                addresses = []
            if (reason := first_refusal(addresses)) is not None:
                problems.append(f"{where}.url: refused: {host} resolves to {reason}")
        secret = SecretStr("")
        headers: dict[str, SecretStr] = {}
        if with_secrets:
            secret, problem = _secret(environ, config.secret_env)
            if problem:
                problems.append(f"{where}.secret_env: {problem}")
            for header, value in config.headers.items():
                if isinstance(value, FromEnv):
                    if value.env not in environ:
                        problems.append(
                            f"{where}.headers.{header}: the environment variable {value.env} "
                            "is not set"
                        )
                    text = environ.get(value.env, "")
                else:
                    text = value
                if not _header_value(text):
                    # never quoted: it may be a credential
                    problems.append(
                        f"{where}.headers.{header}: the value is not a header value (printable "
                        "ASCII on one line; a secret read from a file often ends in a newline)"
                    )
                headers[header] = SecretStr(text)
        destinations.append(Destination(name=name, config=config, secret=secret, headers=headers))
    if problems:
        raise DestinationsFileError(f"{path}: {'; '.join(problems)}")
    return destinations


def _header_value(text: str) -> bool:
    """Whether `text` can be sent as a header value as it is: printable ASCII (tabs allowed),
    no line break. Anything else would fail every request of the destination, and the HTTP
    library's error would quote the value."""
    return all(c == "\t" or " " <= c <= "~" for c in text)


def _secret(environ: Mapping[str, str], variable: str) -> tuple[SecretStr, str | None]:
    """The secret held by `variable`, or the problem with it (never quoting the value)."""
    value = environ.get(variable)
    if value is None:
        return SecretStr(""), f"the environment variable {variable} is not set"
    if not value.startswith("whsec_"):
        return SecretStr(""), f"{variable} does not hold a Standard Webhooks secret (whsec_...)"
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 24:
        return SecretStr(""), f"{variable}: whsec_ and at least 24 bytes in base64 expected"
    return SecretStr(value), None
