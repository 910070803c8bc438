"""Bad input: one clear line on stderr, a non-zero exit, and no snapshot left behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HelperEnv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_refused(helper_env: HelperEnv, result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("odoo-rollback: error: ")
    assert words in lines[0]
    snapshots = helper_env.storage / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())


def test_unreachable_database(helper_env: HelperEnv) -> None:
    helper_env.write(database={"port": _free_port()})
    _assert_refused(helper_env, helper_env.run("snapshot"), "cannot reach database server")


def test_wrong_password(helper_env: HelperEnv) -> None:
    helper_env.write(database={"password": "not-the-password"})
    _assert_refused(helper_env, helper_env.run("snapshot"), "refused the credentials")


def test_password_file_that_does_not_exist(helper_env: HelperEnv, tmp_path: Path) -> None:
    helper_env.sections["database"].pop("password")
    helper_env.write(database={"password_file": str(tmp_path / "missing")})
    _assert_refused(helper_env, helper_env.run("snapshot"), "database.password_file")


def test_missing_filestore_folder(helper_env: HelperEnv, tmp_path: Path) -> None:
    helper_env.write(filestore={"path": str(tmp_path / "no-such-filestore")})
    _assert_refused(helper_env, helper_env.run("snapshot"), "filestore folder")


def test_storage_not_writable(helper_env: HelperEnv, tmp_path: Path) -> None:
    # Root may write anywhere, but nobody can create a folder below a regular file.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    helper_env.write(storage={"path": str(blocker / "storage")})
    result = helper_env.run("snapshot")
    assert result.returncode == 3
    assert "storage" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_not_enough_free_disk(helper_env: HelperEnv, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        # The filestore alone is larger than the 1 MiB this disk has.
        (helper_env.filestore / "big").write_bytes(b"\0" * 3 * 1024 * 1024)
        helper_env.write(storage={"path": str(mount / "storage")})
        result = helper_env.run("snapshot")
        assert result.returncode == 3
        assert "not enough free disk" in result.stderr
        assert not any((mount / "storage" / "snapshots").iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_not_a_plain_database_name(helper_env: HelperEnv) -> None:
    helper_env.write(database={"name": "prod; DROP DATABASE x"})
    _assert_refused(helper_env, helper_env.run("snapshot"), "not a plain identifier")


def test_unknown_configuration_section_and_missing_file(helper_env: HelperEnv, tmp_path: Path) -> None:
    helper_env.write(storgae={"path": "/tmp"})
    _assert_refused(helper_env, helper_env.run("list"), "unknown section")
    result = subprocess.run(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(tmp_path / "nope.toml"), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_interrupted_snapshot_leaves_nothing_usable(helper_env: HelperEnv) -> None:
    helper_env.write()
    # Enough data that pg_dump runs for a moment, then the helper is killed in the middle.
    helper_env.db.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 400000) g")
    proc = subprocess.Popen(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), "snapshot"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    snapshots = helper_env.storage / "snapshots"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(snapshots.glob(".partial-*/db.dump")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert helper_env.run_json("list") == []
    # The next snapshot completes normally beside the leftover.
    assert helper_env.run_json("snapshot")["counts"]["res_partner"] == 50
