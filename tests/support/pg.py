"""A throwaway PostgreSQL cluster: initdb in a temp dir, started on a free port, removed
afterwards. The integration tests' `pg_admin_url` fixture and bench/bench_migrate.py both
use it.

Every client reaches it the same way: TCP to 127.0.0.1 with scram-sha-256 password
authentication (what a Compose `postgres` image does by default), so password redaction
is tested for real.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.base import free_port

# The tests' cluster password: tests assert it never reaches output.
PASSWORD = "pw-" + secrets.token_hex(8)


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def default_parent() -> str | None:
    """/dev/shm when it has room: the benchmark measures the runners, not the filesystem.

    On ext4, creating files shortly after many were deleted is slow (the inode allocator
    skips recently deleted inodes, `recently_deleted()` in perf): every DROP DATABASE or
    removed test cluster on the machine slows the next many-file apply down in the
    server's system time for a while. tmpfs has no such effect, and all tools share it.
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
    """`with Cluster() as admin_url:` — started on enter, stopped and removed on exit.

    parent: the directory of the temp dir (None: `default_parent()`); password: the
    `postgres` role's (random by default); settings: extra `postgres` options; query:
    appended to the URL (the benchmarks' `sslmode=disable`, so no client spends a round trip
    asking for TLS).
    """

    # Durability off: the benchmark measures the runners, not the disk. Applied to every
    # tool alike since they all talk to this one server.
    SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=256MB")

    def __init__(self, parent: str | None = None, *, password: str | None = None,
                 settings: str = SETTINGS, query: str = "sslmode=disable",
                 prefix: str = "deploy-bench-pg-") -> None:
        self.parent = parent if parent is not None else default_parent()
        self.password = password or "bench-" + secrets.token_hex(8)
        self.settings = settings
        self.query = query
        self.prefix = prefix
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb) not found; install "
                               "postgresql or pass --database-url")
        self.tmp: Path | None = None
        self.data: Path | None = None

    def __enter__(self) -> str:
        self.tmp = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.parent))
        os.chmod(self.tmp, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
        pwfile = self.tmp / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        self.data = self.tmp / "data"
        try:
            subprocess.run(_as_postgres([
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                "--no-sync", "-E", "UTF8", "--locale=C"]), check=True, capture_output=True)
            port = free_port()
            opts = f"-p {port} -k {self.tmp} -c listen_addresses=127.0.0.1 {self.settings}"
            subprocess.run(_as_postgres([
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                "-l", str(self.tmp / "log"), "-w", "-t", "60", "start"]),
                check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}"
                               ) from None
        url = f"postgresql://postgres:{self.password}@127.0.0.1:{port}/postgres"
        return f"{url}?{self.query}" if self.query else url

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
