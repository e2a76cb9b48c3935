"""The sample backend's HTTP server (deploy/stack/backend/app.py), without a database."""

from __future__ import annotations

import http.client
import socket
import threading

from deploy.stack.backend.app import DrainingServer, make_handler


def test_accepted_connections_send_without_waiting_for_delayed_acks():
    server = DrainingServer(("127.0.0.1", 0), make_handler(lambda: (200, {"ok": True})))
    with server, socket.create_connection(server.server_address, timeout=5):
        accepted, _ = server.get_request()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_keep_alive_requests_are_answered_on_one_connection():
    server = DrainingServer(("127.0.0.1", 0), make_handler(lambda: (200, {"ok": True})))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
        bodies = []
        for _ in range(3):
            conn.request("GET", "/health")
            response = conn.getresponse()
            bodies.append((response.status, response.read()))
        conn.close()
        assert bodies == [(200, b'{"ok": true}')] * 3
    finally:
        server.shutdown()
        server.server_close()
