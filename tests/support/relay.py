"""A TCP relay on this machine: the network between the test hosts.

The network-namespace hosts (tests/support/netns.py) reach this machine and nothing else,
and this machine does not forward between them (its FORWARD policy is Docker's DROP). A
web host reaches a database host's PostgreSQL as real hosts reach one on a private
network through this relay: it listens on an address of this machine that every host can
reach (`NetnsHosts.reach`) and copies each connection to the database host's published
port. Nothing but bytes: TLS, authentication and the protocol are PostgreSQL's.
"""

from __future__ import annotations

import socket
import threading

CHUNK = 64 * 1024


class Relay:
    """`with Relay(listen_host, (target_host, target_port)) as relay:` then `relay.port`
    (one the kernel picks, unless `port` names one)."""

    def __init__(self, listen_host: str, target: tuple[str, int], port: int = 0):
        self.target = target
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((listen_host, port))
        self.listener.listen(64)
        self.host = listen_host
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []

    def __enter__(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True, name=f"relay-{self.port}").start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for sock in list(self._open):
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self.connections += 1
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
