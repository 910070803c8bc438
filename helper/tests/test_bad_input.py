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


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ("database", "passwrod", "unknown key database.passwrod in the configuration (did you mean password?)"),
        ("storage", "job", "unknown key storage.job"),
        ("api", "secret", "unknown key api.secret"),
        ("services", "stop_timeot", "unknown key services.stop_timeot"),
    ],
)
def test_unknown_configuration_key_is_named(helper_env: HelperEnv, section: str, key: str, words: str) -> None:
    helper_env.write(**{section: {key: "x"}})
    _assert_refused(helper_env, helper_env.run("snapshot"), words)


def test_unknown_key_in_a_sub_table_is_named(helper_env: HelperEnv) -> None:
    helper_env.write(services={"docker": {"projetc": "odoo"}})
    _assert_refused(helper_env, helper_env.run("snapshot"), "unknown key services.docker.projetc")


def test_configuration_not_utf8_or_not_readable_is_one_line(helper_env: HelperEnv, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(helper_env.config_path.read_bytes() + "# café\n".encode("latin-1"))
    result = subprocess.run(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(latin1), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    bad_byte = latin1.read_bytes().index(b"\xe9") + 1
    assert result.stderr.strip().splitlines() == [
        f"odoo-rollback: error: configuration file {latin1} is not UTF-8 text (byte {bad_byte} is not)"
    ]
    # A folder where the file should be: not readable as a file, one line too.
    result = subprocess.run(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(tmp_path), "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot read configuration file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("section", ["database", "smtp"])
def test_password_file_readable_by_others_is_refused(helper_env: HelperEnv, tmp_path: Path, section: str) -> None:
    password = tmp_path / f"{section}-password"
    password.write_text("rollback_helper\n")
    password.chmod(0o644)
    helper_env.sections["database"].pop("password")
    helper_env.write(database={"password_file": str(tmp_path / "database-password")})
    if section == "smtp":
        (tmp_path / "database-password").write_text("rollback_helper\n")
        (tmp_path / "database-password").chmod(0o600)
        helper_env.write(smtp={"host": "127.0.0.1", "password_file": str(password)})
    _assert_refused(
        helper_env, helper_env.run("snapshot"), f"{section}.password_file: {password} is readable by everyone"
    )
    password.chmod(0o640)
    assert helper_env.run("list").returncode == 0


@pytest.mark.parametrize("mode", [0o620, 0o602], ids=["group-writable", "writable-by-all"])
def test_a_password_file_others_may_write_is_refused(helper_env: HelperEnv, tmp_path: Path, mode: int) -> None:
    # Whoever may write the file chooses the password the helper uses: as bad as reading it.
    password = tmp_path / "database-password"
    password.write_text(str(helper_env.sections["database"].pop("password")) + "\n")
    password.chmod(mode)
    helper_env.write(database={"password_file": str(password)})
    _assert_refused(helper_env, helper_env.run("snapshot"), f"{password} may be written by others than its owner")
    password.chmod(0o600)
    assert helper_env.run("snapshot").returncode == 0


def test_a_configuration_holding_a_password_that_everyone_can_read_is_refused(helper_env: HelperEnv) -> None:
    helper_env.write()
    helper_env.config_path.chmod(0o644)
    cmd = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), "snapshot"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    _assert_refused(helper_env, result, "holds database.password and is readable by everyone: chmod o-r it")
    helper_env.config_path.chmod(0o640)
    result = subprocess.run([*cmd[:-1], "list"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("secret", "mode", "words"),
    [
        ("a" * 31, 0o640, "holds 31 characters; at least 32 are needed"),
        ("a" * 64, 0o660, "may be written by others than its owner"),
        ("a" * 64, 0o642, "may be written by others than its owner"),
    ],
)
def test_serve_refuses_a_guessable_or_replaceable_api_secret(
    helper_env: HelperEnv, tmp_path: Path, secret: str, mode: int, words: str
) -> None:
    secret_file = tmp_path / "api-secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(mode)
    socket_path = tmp_path / "api.sock"
    helper_env.write(api={"socket": str(socket_path), "secret_file": str(secret_file)})
    result = helper_env.run("serve", timeout=30)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not socket_path.exists()
