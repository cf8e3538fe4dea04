"""Starting the services as real processes (`python -m services.<name>`), for the local stack
and the integration tests alike."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from services.ingest.config import WriteKey, WriteKeyScope
from shared.secret_hashes import secret_hash
from shared.settings import SCOPES

REPO_ROOT = Path(__file__).resolve().parent.parent

SERVICES = ("ingest", "enrich", "score", "router", "console", "sync")


@dataclass
class StackAddresses:
    """Where everything listens. One value per running stack."""

    kafka_bootstrap: str
    database_url: str
    topic_prefix: str = ""
    # The write keys the stack's clients use -> their source. Each is given to ingest (by its
    # hash) with every scope and no limit per client address (the local stack's clients, the
    # demo and the benchmark, post from one address).
    write_keys: dict[str, str] = field(default_factory=lambda: {"local-dev-key": "local-dev"})
    ingest_port: int = 8000
    health_ports: dict[str, int] = field(
        default_factory=lambda: {
            "ingest": 8080,
            "enrich": 8081,
            "score": 8082,
            "router": 8083,
            "console": 8084,
            "sync": 8085,
        }
    )
    api_ports: dict[str, int] = field(
        default_factory=lambda: {"enrich": 8091, "score": 8092, "router": 8093}
    )
    # The bearer token of the stack's one API client (every scope): made per stack, written to
    # `.devstack/api-token` by the local stack; the services are given only its hash.
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # The console: its pages' port, the key that signs its cookies, and its own API client's
    # token (scope leads:read only: it asks score for a lead's explanation), all per stack.
    # The key of enrich's keyed hashes of identifiers (the do-not-track list), per stack.
    privacy_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    console_port: int = 8088
    console_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    console_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Shorter group timeouts and retry backoff: tests and the local stack (not the bench, whose
    # load could starve heartbeats).
    fast_rebalance: bool = False
    # The sample accounts and suppression list of services/enrich/data (the local stack's demo
    # shows account owners and suppressed leads); tests leave them out unless they test them.
    sample_references: bool = False
    # Extra environment per service, e.g. {"router": {"LEADFLOW_ROUTER_ROUTING_FILE": ...}}.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def environment(self, service: str) -> dict[str, str]:
        import json

        env = {
            "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "LEADFLOW_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "LEADFLOW_DATABASE_URL": self.database_url,
            "LEADFLOW_INGEST_WRITE_KEYS": json.dumps(self.write_key_entries()),
            # Accepts the well-known local-dev-key, and serves the tracking API's /docs.
            "LEADFLOW_INGEST_LOCAL_STACK": "true",
            "LEADFLOW_INGEST_PORT": str(self.ingest_port),
            "LEADFLOW_ENRICH_PRIVACY_KEY": self.privacy_key,
            "PYTHONUNBUFFERED": "1",
        }
        for name, port in self.health_ports.items():
            env[f"LEADFLOW_{name.upper()}_HEALTH_PORT"] = str(port)
        for name, port in self.api_ports.items():
            env[f"LEADFLOW_{name.upper()}_API_PORT"] = str(port)
        env["LEADFLOW_API_CLIENTS"] = json.dumps(
            {
                "local-stack": {
                    "token_sha256": secret_hash(self.api_token),
                    "scopes": sorted(SCOPES),
                },
                "console": {
                    "token_sha256": secret_hash(self.console_token),
                    # the console's pages: leads, and the rules and routing editors
                    "scopes": [
                        "leads:read",
                        "rules:read",
                        "rules:simulate",
                        "rules:publish",
                        "routing:read",
                        "routing:simulate",
                        "routing:publish",
                    ],
                },
            }
        )
        env |= {
            "LEADFLOW_CONSOLE_WEB_PORT": str(self.console_port),
            "LEADFLOW_CONSOLE_SECRET_KEY": self.console_secret,
            # plain HTTP on the loopback: cookies without the Secure flag
            "LEADFLOW_CONSOLE_SECURE_COOKIES": "false",
            "LEADFLOW_CONSOLE_SCORE_API_URL": self.api_url("score")
            if "score" in self.api_ports
            else "",
            "LEADFLOW_CONSOLE_SCORE_API_TOKEN": self.console_token,
            "LEADFLOW_CONSOLE_ROUTER_API_URL": self.api_url("router")
            if "router" in self.api_ports
            else "",
            "LEADFLOW_CONSOLE_ROUTER_API_TOKEN": self.console_token,
            "LEADFLOW_CONSOLE_METRICS_URLS": json.dumps(
                {name: f"http://127.0.0.1:{port}" for name, port in self.health_ports.items()}
            ),
        }
        if self.sample_references:
            data = REPO_ROOT / "services" / "enrich" / "data"
            env["LEADFLOW_ENRICH_ACCOUNTS_FILE"] = str(data / "accounts.csv")
            env["LEADFLOW_ENRICH_SUPPRESSIONS_FILE"] = str(data / "suppressions.csv")
        if self.fast_rebalance:
            # The development broker holds a JoinGroup for the session timeout (measured: a new
            # group's first join took 6.0 s at 6,000 ms, 2.0 s at 2,000), so every start and
            # rebalance waits it. Heartbeats every 500 ms: four may be late before a member is
            # dropped (then it joins again; nothing is lost).
            env |= {
                "LEADFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000",
                "LEADFLOW_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                "LEADFLOW_CONSUMER_RETRY_MAX_BACKOFF_S": "1",
            }
        return env | self.service_env.get(service, {})

    def write_key_entries(self) -> dict[str, dict[str, object]]:
        """`write_keys` as ingest's setting: named `key-1`, `key-2`... in their order, each with
        every scope (a local stack's key also reports CRM feedback, imports and administers)."""
        return {
            f"key-{number}": WriteKey.of(
                key, source=source, scopes=list(get_args(WriteKeyScope)), limit_per_address=False
            ).model_dump()
            for number, (key, source) in enumerate(self.write_keys.items(), start=1)
        }

    def write_env_file(self, path: Path) -> None:
        """Write the LEADFLOW_* settings the services get (`environment`, every service's) to
        `path` as a dotenv file: operator commands run next to the stack read it (see
        `shared.settings.LOCAL_ENV_FILE`), so they reach the same database and broker.

        Values are single-quoted the way python-dotenv's `set_key` quotes them (backslash and
        quote escaped), so JSON such as the write keys reads back unchanged. python-dotenv expands
        `${NAME}` even there, so a value holding `${` is refused rather than written wrong.
        Replaced atomically; readable by its owner only (it names the write keys).
        """
        variables: dict[str, str] = {}
        for service in SERVICES:
            for name, value in self.environment(service).items():
                if not name.startswith("LEADFLOW_"):
                    continue
                if variables.setdefault(name, value) != value:
                    raise ValueError(f"{name} differs between services; it cannot go in {path}")
                if "${" in value:
                    raise ValueError(
                        f"{name}: python-dotenv would expand the ${{...}} in {value!r}"
                    )
        escaped = {n: v.replace("\\", "\\\\").replace("'", "\\'") for n, v in variables.items()}
        temporary = path.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        temporary.touch(mode=0o600)
        temporary.write_text("".join(f"{n}='{v}'\n" for n, v in sorted(escaped.items())))
        temporary.replace(path)

    def health_url(self, service: str, path: str = "/readyz") -> str:
        return f"http://127.0.0.1:{self.health_ports[service]}{path}"

    def api_url(self, service: str, path: str = "") -> str:
        """An address on a consuming service's authenticated API port (`shared.service_api`)."""
        return f"http://127.0.0.1:{self.api_ports[service]}{path}"

    @property
    def api_headers(self) -> dict[str, str]:
        """The stack's API client's credentials, as request headers."""
        return {"Authorization": f"Bearer {self.api_token}"}


class ServiceProcess:
    """One service process. Its output goes to `log_file` (or is inherited)."""

    def __init__(self, service: str, addresses: StackAddresses, *, log_file: Path | None) -> None:
        self.service = service
        self.addresses = addresses
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ServiceProcess:
        """Start `python -m services.<service> <args>` (`run` without args)."""
        env = {**os.environ, **self.addresses.environment(self.service)}
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}", *(args or ("run",))],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            # Own session: a terminal's Ctrl+C reaches only the stack runner, which stops the
            # services first and the broker and database after them.
            start_new_session=True,
        )
        return self

    def run_to_end(self, *args: str, timeout_s: float = 120) -> str:
        """Run a one-off command (e.g. `migrate`) and fail loudly if it fails; its output."""
        env = {**os.environ, **self.addresses.environment(self.service)}
        result = subprocess.run(
            [sys.executable, "-m", f"services.{self.service}", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.service} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        url = self.addresses.health_url(self.service)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.service} exited with {self.process.returncode}{self._tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not ready after {timeout_s}s{self._tail()}")

    def _tail(self) -> str:
        if self.log_file and self.log_file.exists():
            return "\n--- log ---\n" + self.log_file.read_text(errors="replace")[-3000:]
        return ""

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM, wait for the drain, SIGKILL if it does not end in time. Returns exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no drain, no commit. For crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
