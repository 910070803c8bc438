"""The API refuses abuse before it costs anything: a real ``odoo-rollback serve`` on loopback TCP, raw sockets.

Every loop here is bounded; every socket is closed at the end of its test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, Served
from odoo_rollback.api.client import HelperClient
from odoo_rollback.api.signing import signed_headers
from odoo_rollback.config import ApiConfig

SECRET = b"a-long-random-secret-of-at-least-32-characters"
READ_TIMEOUT = 2
MAX_CONNECTIONS = 4


@dataclass
class TcpServed:
    port: int
    client: HelperClient
    process: subprocess.Popen[str]
    log: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.opened.append(sock)
        return sock

    def __post_init__(self) -> None:
        self.opened: list[socket.socket] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tcp_served(helper_env: HelperEnv, tmp_path: Path) -> Iterator[TcpServed]:
    secret_file = tmp_path / "api-secret"
    secret_file.write_text(SECRET.decode() + "\n")
    secret_file.chmod(0o600)
    port = _free_port()
    helper_env.write(
        api={
            "secret_file": str(secret_file),
            "read_timeout": READ_TIMEOUT,
            "max_connections": MAX_CONNECTIONS,
        }
    )
    log = tmp_path / "serve.log"
    with log.open("w") as log_handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "odoo_rollback.cli",
                "--config",
                str(helper_env.config_path),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    client = HelperClient(f"http://127.0.0.1:{port}", SECRET, helper_env.db.name, timeout=15)
    served = TcpServed(port, client, process, log)
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
    try:
        yield served
    finally:
        for sock in served.opened:
            sock.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def _status(sock: socket.socket, timeout: float = 10) -> int:
    """The status of the reply on *sock*; 0 when the server closed it without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return 0
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed *sock* (nothing more will come), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _signed(served: TcpServed, method: str, path: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(SECRET, served.client.database, method, path, body)
    return {"Content-Type": "application/json", **headers}


@pytest.mark.parametrize(
    ("length_headers", "status"),
    [
        ({}, 411),  # POST without a length
        ({"Transfer-Encoding": "chunked", "Content-Length": "20"}, 411),
        ({"Content-Length": "-1"}, 400),
        ({"Content-Length": "+20"}, 400),
        ({"Content-Length": "twenty"}, 400),
        ({"Content-Length": "1_000"}, 400),
        ({"Content-Length": str(10**9)}, 413),
    ],
)
def test_body_length_is_refused_before_the_body_is_read(
    tcp_served: TcpServed, length_headers: dict[str, str], status: int
) -> None:
    # Signed correctly for the body announced, which is never sent: had the server waited for the body,
    # the answer would be 408 after the read timeout, not the refusal.
    body = b'{"kind": "manual", "label": "' + b"x" * 20 + b'"}'
    sock = tcp_served.connect()
    headers = {**_signed(tcp_served, "POST", "/v1/snapshots", body), **length_headers}
    sock.sendall(_head("POST", "/v1/snapshots", headers))
    assert _status(sock) == status
    assert _closed_by_server(sock) or _status(sock, timeout=1) == 0
    status_code, health = tcp_served.client.request("GET", "/v1/health")
    assert status_code == 200 and health["running_job"] is None


def test_two_content_lengths_are_refused(tcp_served: TcpServed) -> None:
    sock = tcp_served.connect()
    headers = {**_signed(tcp_served, "POST", "/v1/drills", b"{}"), "Content-Length": "2"}
    sock.sendall(_head("POST", "/v1/drills", headers).replace(b"\r\n\r\n", b"\r\nContent-Length: 20\r\n\r\n") + b"{}")
    assert _status(sock) == 400


def test_unsigned_request_is_refused_before_its_body_is_read(tcp_served: TcpServed) -> None:
    sock = tcp_served.connect()
    sock.sendall(_head("POST", "/v1/snapshots", {"Content-Length": "60000"}))
    assert _status(sock) == 401  # not 408: the 60000 bytes were never waited for
    assert "refused POST /v1/snapshots: unsigned request" in tcp_served.log.read_text()


def test_half_sent_body_is_closed_after_the_read_timeout(tcp_served: TcpServed) -> None:
    body = b'{"kind": "manual"}'
    sock = tcp_served.connect()
    headers = {**_signed(tcp_served, "POST", "/v1/snapshots", body), "Content-Length": "18"}
    sock.sendall(_head("POST", "/v1/snapshots", headers))
    sock.sendall(body[:5])
    assert _status(sock, timeout=READ_TIMEOUT + 10) == 408
    assert tcp_served.client.request("GET", "/v1/health")[1]["running_job"] is None


def test_slow_headers_are_closed_at_the_deadline_not_per_byte(tcp_served: TcpServed) -> None:
    """One header byte every 0.3 s: each read is quick, but the whole request is late and is closed."""
    sock = tcp_served.connect()
    sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
    closed_after = None
    started = time.monotonic()
    for _ in range(60):  # 18 s at most, far beyond the 2 s deadline
        try:
            sock.sendall(b"X")
        except OSError:
            closed_after = time.monotonic() - started
            break
        if _closed_by_server(sock):
            closed_after = time.monotonic() - started
            break
        time.sleep(0.3)
    assert closed_after is not None, "a request trickling in was kept open"
    assert "timed out" in tcp_served.log.read_text()


def test_a_flood_of_half_sent_requests_is_bounded_and_health_answers(tcp_served: TcpServed) -> None:
    flood = []
    for round_number in range(3):
        for _ in range(MAX_CONNECTIONS * 3):
            sock = tcp_served.connect()
            sock.sendall(b"POST /v1/snapshots HTTP/1.1\r\nContent-Le")  # and never more
            flood.append(sock)
        status, health = tcp_served.client.request("GET", "/v1/health")
        assert status == 200 and health["ok"] is True, (round_number, health)
    time.sleep(0.5)
    still_open = [sock for sock in flood if not _closed_by_server(sock)]
    # The server kept at most its limit of connections; it closed the oldest half-sent ones.
    assert len(still_open) <= MAX_CONNECTIONS
    assert flood[0] not in still_open
    assert tcp_served.process.poll() is None


def test_many_quick_requests_in_a_row_all_answer(tcp_served: TcpServed) -> None:
    for _ in range(3 * MAX_CONNECTIONS):
        assert tcp_served.client.request("GET", "/v1/health")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("POST", "/v1/snapshots", {"kind": "manual", "lable": "typo"}, "unknown key(s) lable"),
        ("POST", "/v1/snapshots", {"kind": "manual", "verify": "yes"}, "verify must be a bool"),
        ("POST", "/v1/snapshots", {"kind": "manual", "label": "two\nlines"}, "label must be one line"),
        ("POST", "/v1/snapshots/20990101T000000Z-manual-abcdef/verify", {"deeep": True}, "unknown key(s) deeep"),
        ("POST", "/v1/drills", {"snapshot": "x", "scratch": "prod"}, "unknown key(s) scratch"),
        ("POST", "/v1/drills", {"snapshot": 7}, "snapshot must be a str"),
        ("POST", "/v1/restores", {"snapshot": "x", "confirm_database": "db", "force": True}, "unknown key(s) force"),
        ("GET", "/v1/health", {"verbose": True}, "takes no body"),
    ],
)
def test_every_body_is_validated_strictly(
    tcp_served: TcpServed, method: str, path: str, body: dict[str, Any], words: str
) -> None:
    status, reply = tcp_served.client.request(method, path, body)
    assert status == 400, reply
    assert words in reply["error"]
    status, page = tcp_served.client.request("GET", "/v1/journal?since=0")
    assert status == 200 and page["events"] == []  # nothing was started


def test_odoo_snapshot_request_is_accepted(tcp_served: TcpServed) -> None:
    """The body Odoo's addon sends (with requested_by) passes the strict check."""
    body = {"kind": "manual", "label": "before the fix", "verify": True, "requested_by": "admin"}
    status, reply = tcp_served.client.request("POST", "/v1/snapshots", body)
    assert status == 202, reply
    deadline = time.monotonic() + 120
    job: dict[str, Any] = reply["job"]
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = tcp_served.client.request("GET", f"/v1/jobs/{job['id']}")[1]
    assert job["state"] == "done", json.dumps(job)
    assert "snapshot requested by admin" in tcp_served.log.read_text()


def test_the_unix_socket_is_bounded_the_same_way(served: Served) -> None:
    """The Unix socket server (the default transport) bounds its connections as the TCP one does."""
    limit = ApiConfig().max_connections
    flood = []
    try:
        for _ in range(limit + 8):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(served.socket_path))
            sock.sendall(b"GET /v1/heal")  # and never more
            flood.append(sock)
        status, health = served.client.request("GET", "/v1/health")
        assert status == 200 and health["ok"] is True
        time.sleep(0.5)
        assert len([sock for sock in flood if not _closed_by_server(sock)]) <= limit
    finally:
        for sock in flood:
            sock.close()


def test_an_oversized_header_block_is_cut_off_and_refused(tcp_served: TcpServed) -> None:
    sock = tcp_served.connect()
    headers = {**_signed(tcp_served, "GET", "/v1/health", b""), **{f"X-Padding-{i}": "x" * 1000 for i in range(40)}}
    with contextlib.suppress(OSError):  # closed while the 40 KiB were still being sent: refused too
        sock.sendall(_head("GET", "/v1/health", headers))
    # 431, or the connection closed if the server's answer came while the client was still sending.
    assert _status(sock) in (0, 431)
    sock = tcp_served.connect()
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /v1/" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n")
    assert _status(sock) in (0, 431)
    assert tcp_served.client.request("GET", "/v1/health")[0] == 200
    assert "Traceback" not in tcp_served.log.read_text()
