"""odoo-rollback health, against a real database, a real Docker engine and a real HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import ComposeStandIn, HelperEnv
from odoo_rollback.config import HealthConfig
from odoo_rollback.health import http_check


def test_healthy_stack(helper_env: HelperEnv, compose_project: ComposeStandIn) -> None:
    helper_env.write(
        services={"backend": "docker", "docker": {"project": compose_project.project}},
        health={"url": compose_project.url, "timeout": 2},
    )
    report = helper_env.run_json("health")
    assert report["ok"] is True
    names = {c["name"]: c for c in report["checks"]}
    assert names["service odoo"]["detail"] == "running" and names["http"]["ok"] is True


def test_stopped_service_and_dead_url_are_unhealthy(helper_env: HelperEnv, compose_project: ComposeStandIn) -> None:
    compose_project.containers["nginx"].stop(timeout=1)
    helper_env.write(
        services={"backend": "docker", "docker": {"project": compose_project.project}},
        health={"url": "http://127.0.0.1:9/web/login", "timeout": 1},
    )
    result = helper_env.run("health", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["service nginx"]["ok"] is False and checks["service odoo"]["ok"] is True
    assert checks["http"]["ok"] is False
    assert "UNHEALTHY" in helper_env.run("health").stdout


def test_unreachable_database_is_unhealthy(helper_env: HelperEnv) -> None:
    helper_env.write(database={"password": "wrong"})
    result = helper_env.run("health")
    assert result.returncode == 1 and "refused the credentials" in result.stdout


def test_storage_too_small_for_the_next_snapshot_is_unhealthy(helper_env: HelperEnv) -> None:
    helper_env.run_json("snapshot")
    checks = {c["name"]: c for c in helper_env.run_json("health")["checks"]}
    assert checks["storage"]["ok"] is True and "the next snapshot needs about" in checks["storage"]["detail"]
    # A margin no disk can offer: the same snapshot would now be refused, and health says so first.
    helper_env.write(storage={"free_space_margin": 1e12})
    result = helper_env.run("health", "--json")
    assert result.returncode == 1
    storage = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "storage")
    assert storage["ok"] is False and storage["detail"].endswith(": too little")
    assert helper_env.run("snapshot").returncode == 3


def serve_after(delay: float) -> tuple[str, threading.Thread, list[ThreadingHTTPServer]]:
    """A real HTTP server on loopback that starts answering *delay* seconds from now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    servers: list[ThreadingHTTPServer] = []

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    def run() -> None:
        time.sleep(delay)
        server = ThreadingHTTPServer(("127.0.0.1", port), Ok)
        servers.append(server)
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}/web/login", thread, servers


def test_a_service_that_answers_soon_is_seen_soon_not_after_a_whole_interval() -> None:
    url, thread, servers = serve_after(0.5)
    try:
        result = http_check(HealthConfig(url=url, attempts=3, interval=2.0, timeout=1.0))
    finally:
        thread.join(timeout=5)
        for server in servers:
            server.shutdown()
            server.server_close()
    # Tries 0.1, 0.2, 0.4 s apart: the fourth or so sees it (a fixed 2 s interval: the second, at 2 s).
    assert result.ok is True and result.attempts >= 3


def test_a_dead_url_is_tried_with_back_off_for_the_configured_patience() -> None:
    result = http_check(HealthConfig(url="http://127.0.0.1:9/web/login", attempts=3, interval=0.2, timeout=1.0))
    # (3 - 1) x 0.2 s of waiting: 0.1, 0.2, then the 0.1 s left.
    assert result.ok is False and result.attempts == 4 and result.error
