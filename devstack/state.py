"""What a local stack keeps in its state directory (`.devstack/`, or `LEADFLOW_DEV_STATE_DIR`),
so that any later command can tell whether a stack runs, which processes are its own, and stop
them even when the process that started them is gone.

- `stack.lock`: an exclusive `flock`, held by the supervisor (`python -m devstack run`) and its
  watchdog for as long as either lives, released by the kernel however they end. Whoever holds it
  owns the directory; nothing else writes there. Never removed (removing a held lock file would
  let a second holder lock a new file of the same name).
- `processes.json`: every process the stack started, the supervisor first, each written as soon
  as it runs: pid, start time and command. The start time (`/proc/<pid>/stat`) tells the stack's
  process from a later one that got the same pid; `make down` signals nothing else.
- `leadflow.env`: the settings the services get, for operator commands
  (`devstack.processes.write_env_file`); `ready`: the supervisor's pid once every service answers.
- `api-token`: the bearer token of the stack's API client (every scope), for `curl` and tools:
  the services know only its hash (`shared.service_api`). Readable by its owner only.

Linux only, like the rest of the local stack (`/proc`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

SUPERVISOR = "supervisor"
WATCHDOG = "watchdog"


@dataclass(frozen=True)
class StartedProcess:
    """A process the stack started, as it was when it started."""

    name: str
    pid: int
    start_time: int  # clock ticks after boot (field 22 of /proc/<pid>/stat)
    command: str
    stop_signal: str = "SIGTERM"  # PostgreSQL's postmaster: SIGINT, its "fast" shutdown

    @classmethod
    def of(cls, name: str, pid: int, *, stop_signal: str = "SIGTERM") -> StartedProcess:
        stat = _stat(pid)
        if stat is None:
            raise RuntimeError(f"{name} (pid {pid}) ended as it started")
        return cls(name, pid, stat[1], command_line(pid), stop_signal)

    def running(self) -> bool:
        """Still this process (not one that reuses its pid), and not a zombie."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start_time and stat[0] not in "ZX"

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid})"

    def stop(self, *, timeout_s: float) -> None:
        """Its stop signal, then SIGKILL if it has not ended after `timeout_s`; returns once it
        has ended. Safe for a process that is not our child (polls, no wait())."""
        for sig, wait_s in ((signal.Signals[self.stop_signal], timeout_s), (signal.SIGKILL, 10.0)):
            if not self.running():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + wait_s
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)


def stop_in_reverse(processes: Iterable[StartedProcess], *, timeout_s: float = 30) -> None:
    """Stop the running ones, last started first: the services drain and commit while the broker
    and the database they need still run."""
    for process in reversed(list(processes)):
        process.stop(timeout_s=timeout_s)


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_file = path / "stack.lock"
        self.record_file = path / "processes.json"
        self.env_file = path / "leadflow.env"
        self.ready_file = path / "ready"
        self.api_token_file = path / "api-token"
        self.logs = path / "logs"

    def create(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)

    def write_api_token(self, token: str) -> None:
        """Write the stack's API token, readable by its owner only, replaced atomically."""
        partial = self.api_token_file.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        partial.replace(self.api_token_file)

    @contextlib.contextmanager
    def lock(self) -> Iterator[int | None]:
        """The directory's lock, if nobody holds it: yields its file descriptor (to hand to a
        process that shares it), or None when another process holds it."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                yield None
                return
            yield fd
        finally:
            os.close(fd)

    def started(self) -> list[StartedProcess]:
        """The record, the supervisor first; empty when there is none."""
        try:
            entries = json.loads(self.record_file.read_text())
        except FileNotFoundError:
            return []
        return [StartedProcess(**entry) for entry in entries]

    def record(self, process: StartedProcess) -> None:
        """Add a process to the record (only the lock's holder calls this)."""
        entries = [asdict(p) for p in (*self.started(), process)]
        temporary = self.record_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(entries, indent=1))
        temporary.replace(self.record_file)

    def running(self) -> list[StartedProcess]:
        return [process for process in self.started() if process.running()]

    def supervisor(self) -> StartedProcess | None:
        return next((p for p in self.running() if p.name == SUPERVISOR), None)

    def clear(self) -> None:
        """Forget a stack that has stopped (only the lock's holder calls this)."""
        for path in (self.env_file, self.ready_file, self.record_file):
            path.unlink(missing_ok=True)


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")[:200]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields after it count
    # from 3, and the start time is field 22.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def port_holders(port: int) -> list[int]:
    """The pids of the processes listening on TCP `port` (any address), as far as we may see:
    the listening sockets of /proc/net/tcp{,6} matched to the processes' open files."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    holders: list[int] = []
    if not inodes:
        return holders
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        holders.append(int(entry.name))
                        break
    return holders


def describe_holders(port: int) -> str:
    """For each process listening on `port`: "pid 123 (`tansu broker ...`)"."""
    pids = port_holders(port)
    if not pids:
        return "a process this user cannot see"
    return ", ".join(f"pid {pid} (`{command_line(pid)[:80]}`)" for pid in pids)
