"""``odoo-rollback serve`` started the way systemd starts it from odoo-rollback.socket.

systemd binds and listens on the socket itself (owner, group and mode from the .socket unit), then
starts the service with that socket as file descriptor 3, ``LISTEN_FDS=1`` and ``LISTEN_PID`` set to
the service's own pid. The launcher below does exactly that: there is no systemd here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HelperEnv
from odoo_rollback.api.client import HelperClient

SECRET = b"socket-activation-secret-of-at-least-32-characters"

# Runs in the child: fd 3 := the passed socket, LISTEN_PID := this pid, then exec keeps that pid.
LAUNCHER = """
import os, sys
passed, listen_pid_matches = int(sys.argv[1]), sys.argv[2] == "yes"
os.dup2(passed, 3)
os.close(passed)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid() if listen_pid_matches else 1)
os.execv(sys.executable, [sys.executable, "-m", "odoo_rollback.cli", *sys.argv[3:]])
"""


def listening_unix_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o660)  # SocketMode=0660
    sock.listen(16)
    return sock


def start_activated(
    helper_env: HelperEnv, sock: socket.socket, log: Path, listen_pid_matches: bool = True
) -> subprocess.Popen[bytes]:
    fd = sock.fileno()
    with log.open("wb") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                str(fd),
                "yes" if listen_pid_matches else "no",
                "--config",
                str(helper_env.config_path),
                "serve",
            ],
            pass_fds=(fd,),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_answer(client: HelperClient, process: subprocess.Popen[bytes], log: Path) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, log.read_text()
        try:
            return client.request("GET", "/v1/health")
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


@pytest.fixture
def api_env(helper_env: HelperEnv, tmp_path: Path) -> Iterator[HelperEnv]:
    secret_file = tmp_path / "api-secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o640)
    # The configured socket is elsewhere: activation must win over it.
    helper_env.write(api={"socket": str(tmp_path / "configured.sock"), "secret_file": str(secret_file)})
    yield helper_env


def test_serve_answers_on_the_socket_systemd_passes(api_env: HelperEnv, tmp_path: Path) -> None:
    path = tmp_path / "activated.sock"
    sock = listening_unix_socket(path)
    inode = os.stat(path).st_ino
    log = tmp_path / "serve.log"
    process = start_activated(api_env, sock, log)
    sock.close()  # only the service holds it now, as when systemd hands it over
    try:
        status, health = wait_answer(HelperClient(f"unix:{path}", SECRET, api_env.db.name), process, log)
        assert status == 200 and health["database"] == api_env.db.name
        assert not (tmp_path / "configured.sock").exists()
    finally:
        assert stop(process) == 0
    # The socket file is systemd's: the service neither replaced nor removed it, nor changed its mode.
    assert os.stat(path).st_ino == inode and os.stat(path).st_mode & 0o777 == 0o660
    assert "(socket activation)" in log.read_text()


def test_activation_meant_for_another_process_is_ignored(api_env: HelperEnv, tmp_path: Path) -> None:
    # LISTEN_PID of another process (e.g. variables inherited from a parent): the configured socket is used.
    sock = listening_unix_socket(tmp_path / "activated.sock")
    log = tmp_path / "serve.log"
    process = start_activated(api_env, sock, log, listen_pid_matches=False)
    sock.close()
    configured = tmp_path / "configured.sock"
    try:
        deadline = time.monotonic() + 20
        while not configured.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert wait_answer(HelperClient(f"unix:{configured}", SECRET, api_env.db.name), process, log)[0] == 200
    finally:
        assert stop(process) == 0
    assert not configured.exists()


def test_a_socket_on_another_address_than_loopback_is_refused(api_env: HelperEnv, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen(1)
    log = tmp_path / "serve.log"
    process = start_activated(api_env, sock, log)
    sock.close()
    assert process.wait(timeout=20) == 2
    assert "the API listens on loopback only, not on 0.0.0.0" in log.read_text()


def test_loopback_tcp_socket_is_served(api_env: HelperEnv, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    log = tmp_path / "serve.log"
    process = start_activated(api_env, sock, log)
    sock.close()
    try:
        assert wait_answer(HelperClient(f"http://127.0.0.1:{port}", SECRET, api_env.db.name), process, log)[0] == 200
    finally:
        assert stop(process) == 0
