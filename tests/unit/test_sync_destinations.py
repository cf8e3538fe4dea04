"""The destinations file: what it refuses (one line naming the file, the destination and the
field), and secrets that never show in a repr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpcore
import pytest

from services.sync.addresses import literal_address, refusal
from services.sync.destinations import (
    DEFAULT_DESTINATIONS_FILE,
    Destination,
    DestinationsFileError,
    Resolve,
    load_destinations,
)
from services.sync.http_client import GuardedBackend, RefusedAddress

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"CRM_SECRET": SECRET, "CRM_KEY": "key-that-is-secret"}


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "destinations.yaml"
    path.write_text(body)
    return path


def destination(url: str = "https://crm.example.com/hooks/leadflow", **fields: str) -> str:
    extra = "".join(f"    {name}: {value}\n" for name, value in fields.items())
    return (
        "destinations:\n  crm:\n"
        f"    url: {url}\n    events: [decisions, lifecycle]\n    secret_env: CRM_SECRET\n" + extra
    )


def public_dns(host: str) -> list[str]:
    return ["93.184.215.14"]


def load(
    path: Path, resolve: Resolve = public_dns, environ: dict[str, str] = ENV
) -> list[Destination]:
    return load_destinations(path, environ, resolve=resolve)


def test_a_destination_loads_with_its_defaults(tmp_path: Path) -> None:
    (crm,) = load(write(tmp_path, destination()))
    assert crm.name == "crm"
    assert crm.config.batch_size == 1
    assert crm.config.routes == ["sdr", "nurture"]
    assert crm.origin == "https://crm.example.com"
    assert crm.secret.get_secret_value() == SECRET


def test_the_default_file_has_no_destination() -> None:
    assert load_destinations(DEFAULT_DESTINATIONS_FILE, {}) == []


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://crm.example.com/x", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("https://user:pass@crm.example.com/", "put credentials in `headers`"),
    ],
)
def test_a_url_that_is_not_http_or_reaches_a_refused_address_is_refused(
    tmp_path: Path, url: str, said: str
) -> None:
    with pytest.raises(DestinationsFileError) as refused:
        load(write(tmp_path, destination(url)))
    message = str(refused.value)
    assert "destinations.yaml" in message
    assert "destinations.crm.url" in message
    assert said in message
    assert "\n" not in message


def test_a_host_name_that_resolves_to_the_metadata_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationsFileError, match=r"destinations\.crm\.url: refused: "
                       r"metadata\.internal resolves to 169\.254\.169\.254 is link-local"):  # fmt: skip
        load(write(tmp_path, destination("http://metadata.internal/")),
             resolve=lambda host: ["10.0.0.7", "169.254.169.254"])  # fmt: skip


def test_loopback_is_allowed_and_an_unresolvable_name_is_left_to_the_connection(
    tmp_path: Path,
) -> None:
    load(write(tmp_path, destination("http://127.0.0.1:9000/hook")))
    load(write(tmp_path, destination("http://[::1]:9000/hook")))

    def nowhere(host: str) -> list[str]:
        raise OSError("no such host")

    load(write(tmp_path, destination("http://crm.invalid/hook")), resolve=nowhere)


def test_a_missing_or_malformed_secret_names_its_variable_never_its_value(tmp_path: Path) -> None:
    path = write(tmp_path, destination())
    with pytest.raises(DestinationsFileError, match=r"destinations\.crm\.secret_env: the "
                       r"environment variable CRM_SECRET is not set"):  # fmt: skip
        load(path, environ={})
    with pytest.raises(DestinationsFileError) as refused:
        load(path, environ={"CRM_SECRET": "hunter2-plain-password"})
    assert "whsec_" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_header_values_come_from_the_environment_and_stay_out_of_reprs(tmp_path: Path) -> None:
    body = destination(headers="{X-Api-Key: {env: CRM_KEY}, X-Source: leadflow}")
    (crm,) = load(write(tmp_path, body))
    assert crm.headers["X-Api-Key"].get_secret_value() == "key-that-is-secret"
    shown = repr(crm) + str(crm) + repr(crm.headers)
    assert "key-that-is-secret" not in shown
    assert SECRET not in shown
    with pytest.raises(DestinationsFileError, match=r"headers\.X-Api-Key: the environment "
                       "variable CRM_KEY is not set"):  # fmt: skip
        load(write(tmp_path, body), environ={"CRM_SECRET": SECRET})


def test_a_header_value_with_a_line_break_is_refused_without_being_quoted(tmp_path: Path) -> None:
    """A secret mounted from a file often ends in a newline: every request would fail, and the
    HTTP library's error would quote the value into logs and the last error."""
    body = destination(headers="{X-Api-Key: {env: CRM_KEY}}")
    with pytest.raises(DestinationsFileError, match=r"headers\.X-Api-Key: the value is not a "
                       "header value") as refused:  # fmt: skip
        load(write(tmp_path, body), environ={**ENV, "CRM_KEY": "key-that-is-secret\n"})
    assert "key-that-is-secret" not in str(refused.value)
    with pytest.raises(DestinationsFileError, match=r"not a header value"):
        load(write(tmp_path, body), environ={**ENV, "CRM_KEY": "clé"})


def test_headers_sync_sets_itself_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationsFileError, match=r"destinations\.crm\.headers: .*webhook-id"):
        load(write(tmp_path, destination(headers="{webhook-id: mine}")))


def test_a_field_error_names_the_destination_and_its_line(tmp_path: Path) -> None:
    with pytest.raises(DestinationsFileError,
                       match=r"line 6: destinations\.crm\.batch_size: .*greater than or equal"):  # fmt: skip
        load(write(tmp_path, destination(batch_size="0")))


def test_addresses() -> None:
    assert literal_address("crm.example.com") is None
    address = literal_address("[::1]")
    assert address is not None
    assert refusal(address) is None
    private = literal_address("10.1.2.3")
    assert private is not None
    assert refusal(private) is None


@pytest.mark.parametrize(
    "written",
    [
        "::ffff:169.254.169.254",  # mapped
        "64:ff9b::a9fe:a9fe",  # NAT64: 169.254.169.254 through the translator
        "2002:a9fe:a9fe::1",  # 6to4
        "::169.254.169.254",  # the deprecated compatible form
        "::ffff:0.0.0.0",
    ],
)
def test_an_ipv6_address_carrying_a_refused_ipv4_one_is_refused(written: str) -> None:
    address = literal_address(written)
    assert address is not None
    assert refusal(address) is not None, written


def test_an_ipv6_address_carrying_a_public_ipv4_one_is_allowed() -> None:
    for written in ("64:ff9b::808:808", "2002:808:808::1", "2001:db8::1"):
        address = literal_address(written)
        assert address is not None
        assert refusal(address) is None, written


class _NoConnection(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: object, **kwargs: object) -> Any:
        self.asked.append(host)
        raise httpcore.ConnectError("not in a unit test")


@pytest.mark.parametrize("host", ["169.254.169.254", "::ffff:169.254.169.254", "0.0.0.0"])
async def test_each_connection_checks_the_address_it_goes_to(host: str) -> None:
    inner = _NoConnection()
    with pytest.raises(RefusedAddress):
        await GuardedBackend(inner).connect_tcp(host, 80)
    assert inner.asked == []


async def test_an_allowed_address_is_connected_to_by_address() -> None:
    inner = _NoConnection()
    with pytest.raises(httpcore.ConnectError):
        await GuardedBackend(inner).connect_tcp("127.0.0.1", 80)
    assert inner.asked == ["127.0.0.1"]
