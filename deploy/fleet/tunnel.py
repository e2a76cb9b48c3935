"""Ports forwarded over an SSH transport, listening before anyone is told their port.

`forward_local`: a port here, each connection a channel to an address the host reaches.
`forward_remote`: a port on the host's loopback, each connection a channel back to an
address here (how a host pulls from the registry on the deploying machine).
`database_url`: DATABASE_URL as seen from here: through `forward_local` for a host.

Fabric's `Connection.forward_local` binds its listener in a thread it starts, after the
caller picked the port; a client that connects at once may find nothing listening
("connection refused"). Here the socket is bound to port 0 (the kernel picks a free one:
no race with other processes either) and listening before `forward_local` yields the port,
so a connection made the moment the URL is known is accepted by construction.
"""

from __future__ import annotations

import select
import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from deploy.errors import ConfigError
from deploy.fleet.trust import open_connection
from deploy.settings import Settings
from deploy.shell import is_remote

CHUNK = 64 * 1024
# How often an idle pump checks whether the tunnel is being closed.
IDLE_CHECK = 0.2


class Forward:
    """Counts what crossed the tunnel (a deploy reports it per host) and knows its open
    pairs."""

    def __init__(self, port: int):
        self.port = port
        self.bytes_in = 0  # from the far end to us
        self.bytes_out = 0
        self.connections = 0
        self.errors: list[str] = []  # channels the server refused, for the error message
        self._lock = threading.Lock()

    def _count(self, inbound: int, outbound: int) -> None:
        with self._lock:
            self.bytes_in += inbound
            self.bytes_out += outbound


def _pump(sock: socket.socket, channel, stop: threading.Event, forward: Forward) -> None:
    """Copy both ways until either side closes (or the tunnel is closed)."""
    try:
        while not stop.is_set():
            ready, _, _ = select.select([sock, channel], [], [], IDLE_CHECK)
            if sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    break
                channel.sendall(data)
                forward._count(0, len(data))
            if channel in ready:
                data = channel.recv(CHUNK)
                if not data:
                    break
                sock.sendall(data)
                forward._count(len(data), 0)
    except (OSError, EOFError):
        pass  # either end went away: close both
    finally:
        channel.close()
        sock.close()


@contextmanager
def forward_local(transport, remote_host: str, remote_port: int,
                  local_host: str = "127.0.0.1") -> Iterator[Forward]:
    """Listen on local_host:<free port>; each connection becomes a direct-tcpip channel to
    remote_host:remote_port as the SSH server sees it. Yields once the listener is ready."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((local_host, 0))
    listener.listen(64)
    forward = Forward(listener.getsockname()[1])
    stop = threading.Event()
    pumps: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, peer = listener.accept()
            except OSError:  # the listener was closed: the tunnel is done
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel = transport.open_channel("direct-tcpip", (remote_host, remote_port),
                                                 peer)
            except Exception as exc:  # refused by the server: the client sees a close
                forward.errors.append(f"{remote_host}:{remote_port}: {exc}")
                sock.close()
                continue
            forward.connections += 1
            pump = threading.Thread(target=_pump, args=(sock, channel, stop, forward),
                                    name=f"tunnel-{forward.port}", daemon=True)
            pump.start()
            pumps.append(pump)

    acceptor = threading.Thread(target=accept, name=f"tunnel-accept-{forward.port}",
                                daemon=True)
    acceptor.start()
    try:
        yield forward
    finally:
        stop.set()
        # shutdown() wakes a thread blocked in accept(); close() alone may not.
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        acceptor.join(timeout=2)
        for pump in pumps:
            pump.join(timeout=2)


# Paramiko keeps one handler per transport for the channels the server opens back to us:
# one reverse forward per transport at a time.
_REMOTE_FORWARDS: weakref.WeakSet = weakref.WeakSet()


@contextmanager
def forward_remote(transport, local_host: str, local_port: int,
                   remote_host: str = "127.0.0.1", remote_port: int = 0) -> Iterator[Forward]:
    """Ask the SSH server to listen on remote_host:remote_port (0: the server picks a free
    port); each connection made there arrives here as a channel and is piped to
    local_host:local_port. Yields once the server listens, with `Forward.port` the port on
    the host; bytes_out counts what went to the host. The forward is cancelled on exit.

    Raises paramiko.SSHException when the server refuses (AllowTcpForwarding).
    """
    if transport in _REMOTE_FORWARDS:
        raise RuntimeError("this SSH transport already has a reverse forward open")
    forward = Forward(0)
    stop = threading.Event()
    pumps: list[threading.Thread] = []

    def connect(channel) -> None:
        try:
            sock = socket.create_connection((local_host, local_port), timeout=10)
        except OSError as exc:
            forward.errors.append(f"{local_host}:{local_port}: {exc}")
            channel.close()
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        forward.connections += 1
        _pump(sock, channel, stop, forward)

    def handler(channel, origin, server) -> None:
        # Called in paramiko's transport thread, which must not block: connect elsewhere.
        if stop.is_set():
            channel.close()
            return
        pump = threading.Thread(target=connect, args=(channel,), daemon=True,
                                name=f"rtunnel-{forward.port}")
        pump.start()
        pumps.append(pump)

    forward.port = transport.request_port_forward(remote_host, remote_port, handler=handler)
    _REMOTE_FORWARDS.add(transport)
    try:
        yield forward
    finally:
        stop.set()
        try:
            transport.cancel_port_forward(remote_host, forward.port)
        except Exception:  # the connection is gone: so is the listener on the host
            pass
        _REMOTE_FORWARDS.discard(transport)
        for pump in pumps:
            pump.join(timeout=2)


# --- the database through a tunnel ----------------------------------------------------


@contextmanager
def database_url(c, settings: Settings) -> Iterator[str]:
    """DATABASE_URL as seen from here: as is locally; through an SSH tunnel to the host's
    loopback-published port remotely (DATABASE_URL then describes the database as the
    host sees it). The tunnel listens before its URL is handed out (forward_local, above)."""
    if not is_remote(c):
        yield settings.database_url
        return
    parts = urlsplit(settings.database_url)
    remote_port = parts.port or 5432
    if not settings.values.get("DATABASE_URL"):
        # Built from POSTGRES_*: the stack publishes PostgreSQL on this loopback port.
        published = settings.values.get("POSTGRES_PUBLISHED_PORT") or "5432"
        if not published.isdigit() or not 1 <= int(published) <= 65535:
            raise ConfigError(f"POSTGRES_PUBLISHED_PORT: {published!r} is not a port number "
                              f"(1-65535) [host {c.host}]")
        remote_port = int(published)
    if not c.is_connected:
        open_connection(c, settings)
    auth = parts.netloc.rpartition("@")[0]
    remote_host = parts.hostname or "127.0.0.1"
    if not settings.values.get("DATABASE_URL") and not settings.values.get("POSTGRES_HOST"):
        remote_host = published_host(settings)
    with forward_local(c.client.get_transport(), remote_host, remote_port) as forward:
        yield urlunsplit(parts._replace(
            netloc=(auth + "@" if auth else "") + f"127.0.0.1:{forward.port}"))


def published_host(settings: Settings) -> str:
    """Where a host's stack publishes PostgreSQL, as that host reaches it: its
    POSTGRES_PUBLISHED_HOST (a database host's private address), loopback by default and
    for a wildcard address."""
    host = (settings.values.get("POSTGRES_PUBLISHED_HOST") or "").strip().strip("[]")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
