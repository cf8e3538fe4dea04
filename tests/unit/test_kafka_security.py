"""How leadflow's Kafka clients authenticate (shared/settings.py `KafkaSettings`,
shared/kafka.py): the settings refuse combinations that would connect without the security
they name, both client libraries get the same connection from one function each, every client
in the code is built with it, and the password shows in no message."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

import shared.kafka
from services.score.config import ScoreSettings
from shared.consumer.failures import is_transient
from shared.kafka import aiokafka_connection, librdkafka_connection
from shared.settings import KafkaSettings, SettingsError, load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CLIENT_CODE = ("shared", "services", "devstack", "bench")
AIOKAFKA_CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
PASSWORD = "pw-that-must-never-be-printed"
CA_FILE = "/etc/kafka-ca/ca.crt"


@pytest.fixture(autouse=True)
def no_kafka_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LEADFLOW_KAFKA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ssl_contexts(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The CA file of each SSL context `aiokafka_connection` creates (none is created)."""
    created: list[str | None] = []

    def create_ssl_context(*, cafile: str | None = None) -> str:
        created.append(cafile)
        return f"ssl context verifying against {cafile}"

    monkeypatch.setattr(shared.kafka, "create_ssl_context", create_ssl_context)
    return created


def sasl_ssl(**changes: Any) -> KafkaSettings:
    """A deployment's settings: TLS verified against the cluster CA, a SCRAM user."""
    given: dict[str, Any] = {
        "bootstrap_servers": "leadflow-kafka-kafka-bootstrap:9093",
        "security_protocol": "SASL_SSL",
        "sasl_username": "leadflow-score",
        "sasl_password": SecretStr(PASSWORD),
        "ssl_cafile": CA_FILE,
    }
    return KafkaSettings(**{**given, **changes})


def test_the_local_stack_connects_in_plaintext_without_credentials() -> None:
    # The development broker (Tansu) has neither TLS nor users: the default must reach it.
    settings = KafkaSettings()

    assert aiokafka_connection(settings) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert librdkafka_connection(settings) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_a_deployment_authenticates_over_tls_verified_against_its_ca(
    ssl_contexts: list[str | None],
) -> None:
    settings = sasl_ssl()

    assert aiokafka_connection(settings) == {
        "bootstrap_servers": "leadflow-kafka-kafka-bootstrap:9093",
        "security_protocol": "SASL_SSL",
        "ssl_context": f"ssl context verifying against {CA_FILE}",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "leadflow-score",
        "sasl_plain_password": PASSWORD,
    }
    assert ssl_contexts == [CA_FILE]
    assert librdkafka_connection(settings) == {
        "bootstrap.servers": "leadflow-kafka-kafka-bootstrap:9093",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": CA_FILE,
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "leadflow-score",
        "sasl.password": PASSWORD,
    }


@pytest.mark.parametrize(
    ("changes", "tls_ca", "user"),
    [
        # TLS without a CA file: the system's CAs verify the broker (a managed Kafka).
        ({"ssl_cafile": None}, [None], "leadflow-score"),
        # TLS only, no authentication (a broker that takes client certificates elsewhere).
        (
            {"security_protocol": "SSL", "sasl_username": None, "sasl_password": None},
            [CA_FILE],
            None,
        ),
        # SCRAM over plaintext (a test broker): credentials, no TLS.
        ({"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": None}, [], "leadflow-score"),
        # The other SCRAM mechanism.
        ({"sasl_mechanism": "SCRAM-SHA-256"}, [CA_FILE], "leadflow-score"),
    ],
    ids=["system-cas", "tls-only", "sasl-plaintext", "scram-sha-256"],
)
def test_both_client_libraries_get_the_same_connection(
    ssl_contexts: list[str | None],
    changes: dict[str, Any],
    tls_ca: list[str | None],
    user: str | None,
) -> None:
    settings = sasl_ssl(**changes)
    aiokafka = aiokafka_connection(settings)
    librdkafka = librdkafka_connection(settings)

    assert aiokafka["security_protocol"] == librdkafka["security.protocol"]
    assert ssl_contexts == tls_ca
    assert ("ssl_context" in aiokafka) == bool(tls_ca)
    if tls_ca:
        assert librdkafka["ssl.ca.location"] == (tls_ca[0] or "probe")  # probe: the system's
    else:
        assert "ssl.ca.location" not in librdkafka
    assert aiokafka.get("sasl_plain_username") == librdkafka.get("sasl.username") == user
    assert aiokafka.get("sasl_mechanism") == librdkafka.get("sasl.mechanisms")
    if user is not None:
        assert aiokafka["sasl_plain_password"] == librdkafka["sasl.password"] == PASSWORD


def test_a_missing_ca_file_stops_the_client_naming_the_file_and_its_setting() -> None:
    # A settings error, not an OSError: the consumer runner would retry that as an outage.
    settings = sasl_ssl(ssl_cafile="/nowhere/ca.crt")

    with pytest.raises(SettingsError) as refused:
        aiokafka_connection(settings)
    assert "/nowhere/ca.crt does not exist" in str(refused.value)
    assert "LEADFLOW_KAFKA_SSL_CAFILE" in str(refused.value)
    assert not is_transient(refused.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # SASL without its password would try (and fail) to log in at every connection.
        (
            {"sasl_password": None},
            "SASL_SSL authenticates with a user and its password: set both",
        ),
        ({"sasl_username": None}, "set both LEADFLOW_KAFKA_SASL_USERNAME and"),
        ({"sasl_password": SecretStr("")}, "set both"),
        # Credentials with a protocol that ignores them: a connection without authentication
        # that looks configured.
        (
            {"security_protocol": "PLAINTEXT", "ssl_cafile": None},
            "LEADFLOW_KAFKA_SASL_USERNAME and LEADFLOW_KAFKA_SASL_PASSWORD set, but"
            " LEADFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not authenticate",
        ),
        (
            {"security_protocol": "SSL"},
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL=SSL does not authenticate",
        ),
        # A CA file with a protocol that has no TLS: the traffic is not encrypted.
        (
            {"security_protocol": "SASL_PLAINTEXT"},
            "LEADFLOW_KAFKA_SSL_CAFILE set, but LEADFLOW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
            " does not use TLS",
        ),
        ({"security_protocol": "TLS"}, "Input should be 'PLAINTEXT', 'SSL'"),
        ({"sasl_mechanism": "PLAIN"}, "Input should be 'SCRAM-SHA-512' or 'SCRAM-SHA-256'"),
    ],
    ids=[
        "no-password",
        "no-user",
        "empty-password",
        "credentials-in-plaintext",
        "credentials-with-tls-only",
        "ca-without-tls",
        "unknown-protocol",
        "unknown-mechanism",
    ],
)
def test_settings_refuse_what_would_connect_without_the_security_they_name(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        sasl_ssl(**changes)


def test_the_password_shows_in_no_message(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sasl_ssl()
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)

    # As a deployment sets it: from the environment, with a mistake elsewhere in the settings.
    monkeypatch.setenv("LEADFLOW_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("LEADFLOW_KAFKA_SASL_USERNAME", "leadflow-score")
    monkeypatch.setenv("LEADFLOW_KAFKA_SASL_PASSWORD", PASSWORD)
    with pytest.raises(ValidationError) as refused:
        KafkaSettings()
    assert "does not authenticate" in str(refused.value)
    assert PASSWORD not in str(refused.value)

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/leadflow")
    with pytest.raises(SettingsError) as at_start:
        load_settings(ScoreSettings)
    assert "does not authenticate" in str(at_start.value)
    assert PASSWORD not in str(at_start.value)


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_every_kafka_client_in_the_code_connects_through_the_one_mapping() -> None:
    """A client built with its own `bootstrap_servers` would skip TLS and authentication."""
    bypassing = []
    aiokafka_clients = 0
    for folder in CLIENT_CODE:
        for path in sorted((REPO / folder).rglob("*.py")):
            where = path.relative_to(REPO)
            for call in _calls(path):
                if _name(call) in AIOKAFKA_CLIENTS:
                    aiokafka_clients += 1
                    spread = [k.value for k in call.keywords if k.arg is None]
                    if not any(
                        isinstance(v, ast.Call) and _name(v) == "aiokafka_connection"
                        for v in spread
                    ):
                        bypassing.append(f"{where}:{call.lineno} {_name(call)}")
            source = path.read_text()
            if "bootstrap.servers" in source and where != Path("shared/kafka.py"):
                bypassing.append(f"{where}: librdkafka properties outside shared/kafka.py")
    assert bypassing == []
    assert aiokafka_clients >= 10  # the check found the clients (producers, consumers, admins)

    # shared/kafka.py: librdkafka's connection is written once, in `librdkafka_connection`.
    kafka_py = (REPO / "shared" / "kafka.py").read_text()
    assert kafka_py.count('"bootstrap.servers"') == 1
    assert "**librdkafka_connection(settings)" in kafka_py
