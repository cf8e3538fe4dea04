"""Logging setup and the Prometheus metrics every service shares.

Metric names are part of what operators depend on (dashboards, alerts); labels carry the service
and topic so one dashboard serves all four services.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("leadflow_messages_in", "Messages consumed and handled", ["service", "topic"])
MESSAGES_OUT = Counter(
    "leadflow_messages_out",
    "Messages produced and acknowledged by the broker",
    ["service", "topic"],
)
DEAD_LETTERS = Counter(
    "leadflow_dead_letters", "Messages sent to a dead-letter topic", ["service", "topic"]
)
RETRIES = Counter(
    "leadflow_transient_retries", "Batches retried after a transient failure", ["service", "cause"]
)
BATCH_SECONDS = Histogram(
    "leadflow_batch_seconds",
    "Time to handle one batch: decode, handle, store, produce, commit",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "leadflow_batch_size",
    "Messages per consumed batch",
    ["service"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "leadflow_consumer_lag",
    "Messages behind the partition's high watermark",
    ["service", "topic", "partition"],
)
REWOUND_RECORDS = Counter(
    "leadflow_consumer_rewound_records",
    "Records applied again because Kafka's committed offset was ahead of the offset stored in"
    " PostgreSQL (a failover or a restore lost the transactions that had applied them)",
    ["service", "topic"],
)


# PII must not reach logs in clear (logs are shipped, kept and read far more widely than the
# database). Emails keep their domain (the company: what an operator needs to follow a lead
# through firmographics), in any script (`josé@exämple.de`, internationalised addresses);
# phones in international (+CC...) or North-American formatted notation are masked whole; public
# IP addresses (a visitor's, in access logs and forwarded headers) are masked whole, while the
# non-public ones (loopback, private networks: the cluster's own addresses) stay readable. Bare
# digit runs are left alone: offsets, ports and ids look the same.
_EMAIL = re.compile(r"[\w.%+-]+@((?:[\w-]+\.)+[^\W\d_]{2,})")
_PHONE = re.compile(
    r"(?<![\w+])\+\d[\d ().-]{6,18}\d(?!\w)"  # +14155550123, +44 20 7946 0958
    r"|(?<![\w(])\(\d{3}\) ?\d{3}[ .-]\d{4}(?!\w)"  # (415) 555-0123
    r"|(?<![\w-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w-])"  # 415-555-0123, 415.555.0123
)
# Candidates only: `_public_ip` keeps what `ipaddress` reads as a global address.
_IP = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"  # 203.0.113.7
    r"|(?<![\w:.])(?=[0-9A-Fa-f:]*::|(?:[0-9A-Fa-f]{1,4}:){7})[0-9A-Fa-f:]{2,39}(?![\w:])"  # 2001:db8::1
)


def _public_ip(match: re.Match[str]) -> str:
    try:
        address = ipaddress.ip_address(match.group(0))
    except ValueError:
        return match.group(0)
    return "<ip>" if address.is_global else match.group(0)


def redact_pii(text: str) -> str:
    """`text` with every email's local part replaced by `***`, every phone number by `<phone>`
    and every public IP address by `<ip>`. Idempotent; text without PII comes back unchanged."""
    if "@" in text:
        text = _EMAIL.sub(r"***@\1", text)
    text = _PHONE.sub("<phone>", text)
    if "." in text or ":" in text:
        text = _IP.sub(_public_ip, text)
    return text


# Loggers whose formatter unpacks `record.args` itself (uvicorn's access log: client, method,
# path, version, status): their arguments are redacted one by one instead of merged.
_FORMATTERS_READ_ARGS = frozenset({"uvicorn.access"})


def _redacting_factory(factory: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(*args, **kwargs)
        # Redact here, at creation, so every handler (ours, uvicorn's, a library's) sees the
        # redacted text: a handler filter would miss loggers that do not propagate to the root.
        if record.name in _FORMATTERS_READ_ARGS and isinstance(record.args, tuple):
            record.args = tuple(redact_pii(a) if isinstance(a, str) else a for a in record.args)
        else:  # format once: an argument's str() (an object holding an email) is covered too
            record.msg, record.args = redact_pii(record.getMessage()), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_pii(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact_pii(record.stack_info)
        return record

    make.redacts_pii = True  # type: ignore[attr-defined]
    return make


def install_pii_redaction() -> None:
    """Make every log record created in this process carry redacted text (`redact_pii`):
    message, arguments, exception and stack. Safe to call more than once."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_pii", False):
        logging.setLogRecordFactory(_redacting_factory(factory))


def configure_logging(level: str, *, service: str) -> None:
    """One line per record on stderr, with the service name (12-factor: the platform collects).
    Emails and phone numbers are redacted from every record (`install_pii_redaction`)."""
    install_pii_redaction()
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        force=True,
    )
    # aiokafka logs every reconnect attempt at ERROR while a broker is away; our own code
    # reports the outage once, with what it means.
    logging.getLogger("aiokafka").setLevel(
        max(logging.getLevelName(level.upper()), logging.WARNING)
    )
