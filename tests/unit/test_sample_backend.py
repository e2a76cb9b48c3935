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


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def test_a_client_that_resets_its_connection_prints_nothing(capfd):
    # HAProxy ends its health checks with a reset; the server must not print a traceback
    # (socketserver's default) for each one.
    import struct

    server = DrainingServer(("127.0.0.1", 0), make_handler(lambda: (200, {"ok": True})))
    _serve(server)
    try:
        for _ in range(3):
            sock = socket.create_connection(server.server_address, timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, while the server waits for the next request
        conn = http.client.HTTPConnection(*server.server_address, timeout=5)
        conn.request("GET", "/health")  # still serving
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
