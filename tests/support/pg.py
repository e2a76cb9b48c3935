"""A throwaway PostgreSQL cluster for the benchmarks: initdb in a temp dir, a free port.

Every tool under test reaches it the same way: TCP to 127.0.0.1 with scram-sha-256
password authentication (what a Compose `postgres` image does by default) and
`sslmode=disable` (so no client spends a round trip asking for TLS).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port, pg_bindir  # noqa: E402 - the tests' own helpers


def default_parent() -> str | None:
    """/dev/shm when it has room: the benchmark measures the runners, not the filesystem.

    On ext4, creating files shortly after many were deleted is slow (the inode allocator
    skips recently deleted inodes, `recently_deleted()` in perf): every DROP DATABASE or
    removed test cluster on the machine made the next 300-file apply 3× slower in the
    server's system time for ~30 s. tmpfs has no such effect, and all tools share it.
    """
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
            return str(shm)
    except OSError:
        pass
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Cluster:
    """`with Cluster() as admin_url:` — started on enter, stopped and removed on exit."""

    # Durability off: the benchmark measures the runners, not the disk. Applied to every
    # tool alike since they all talk to this one server.
    SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=256MB")

    def __init__(self, parent: str | None = None) -> None:
        self.parent = parent if parent is not None else default_parent()
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb) not found; install "
                               "postgresql or pass --database-url")
        self.tmp: Path | None = None
        self.data: Path | None = None

    def __enter__(self) -> str:
        self.tmp = Path(tempfile.mkdtemp(prefix="deploy-bench-pg-", dir=self.parent))
        os.chmod(self.tmp, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
        password = "bench-" + secrets.token_hex(8)
        pwfile = self.tmp / "pw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        self.data = self.tmp / "data"
        try:
            subprocess.run(_as_postgres([
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                "--no-sync", "-E", "UTF8", "--locale=C"]), check=True, capture_output=True)
            port = free_port()
            opts = f"-p {port} -k {self.tmp} -c listen_addresses=127.0.0.1 {self.SETTINGS}"
            subprocess.run(_as_postgres([
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                "-l", str(self.tmp / "log"), "-w", "-t", "60", "start"]),
                check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}"
                               ) from None
        return f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres?sslmode=disable"

    def __exit__(self, *exc) -> None:
        if self.data is not None and (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data),
                                         "-m", "immediate", "stop"]), capture_output=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (query string kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def with_query(url: str, **params: str) -> str:
    """Add query parameters that are not already there (e.g. sslmode=disable)."""
    parts = urlsplit(url)
    query = [q for q in parts.query.split("&") if q]
    have = {q.split("=", 1)[0] for q in query}
    query += [f"{k}={v}" for k, v in params.items() if k not in have]
    return urlunsplit(parts._replace(query="&".join(query)))
