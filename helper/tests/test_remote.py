"""Off-host copies for real: an OpenSSH server and an S3-protocol server (moto), both on loopback.

The sshd runs from a configuration file, host key and client key made here (no system-wide sshd
configuration is read or changed); moto's server runs from its own virtual environment (.venv/s3,
made by scripts/setup.sh, since its Flask and Werkzeug would not fit Odoo's).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, database_counts

SSHD = Path("/usr/sbin/sshd")
S3_SERVER = Path(
    os.environ.get(
        "ROLLBACK_TEST_S3_SERVER", Path(__file__).resolve().parents[2] / ".venv" / "s3" / "bin" / "moto_server"
    )
)


@pytest.fixture(autouse=True)
def no_aws_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # rclone 1.60's S3 backend cannot load a custom CA bundle ("unsupported transport"); this machine's
    # environment names one for its proxy. The loopback S3 server is plain HTTP and needs none.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def sftp_remote(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An sshd on a loopback port with a host key and a client key made here; the rclone remote for it."""
    if not SSHD.exists():
        pytest.fail("Debian's openssh-server is needed (apt-get install openssh-server)")
    folder = tmp_path / "sshd"
    folder.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    (folder / "authorized_keys").chmod(0o600)
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    # sshd (as root) wants its privilege separation folder, which Debian's service unit creates at boot.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = folder / "sshd.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=handle, stderr=handle)
    try:
        wait_port(port, process, log)
        host_key = (folder / "host_key.pub").read_text().split()
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        store = tmp_path / "offsite"
        store.mkdir()
        rclone_conf = tmp_path / "rclone.conf"
        rclone_conf.write_text(
            f"[sshtest]\ntype = sftp\nhost = 127.0.0.1\nport = {port}\nuser = {os.environ.get('USER', 'root')}\n"
            f"key_file = {folder / 'client_key'}\nknown_hosts_file = {folder / 'known_hosts'}\n"
        )
        rclone_conf.chmod(0o600)
        yield {"rclone_config": str(rclone_conf), "target": f"sshtest:{store}", "folder": store}
    finally:
        stop(process)


@pytest.fixture
def s3_remote(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """moto's S3 server on a loopback port, a bucket, and the rclone remote for it."""
    if not S3_SERVER.exists():
        pytest.fail(f"moto's server is needed at {S3_SERVER} (scripts/setup.sh makes .venv/s3)")
    port = free_port()
    log = tmp_path / "s3.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(S3_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=handle, stderr=handle)
    try:
        wait_port(port, process, log)
        rclone_conf = tmp_path / "rclone-s3.conf"
        rclone_conf.write_text(
            "[s3test]\ntype = s3\nprovider = Other\naccess_key_id = test\nsecret_access_key = test\n"
            f"endpoint = http://127.0.0.1:{port}\nregion = us-east-1\n"
        )
        rclone_conf.chmod(0o600)
        subprocess.run(["rclone", "--config", str(rclone_conf), "mkdir", "s3test:snapshots"], check=True)
        yield {"rclone_config": str(rclone_conf), "target": "s3test:snapshots/odoo"}
    finally:
        stop(process)


def wait_location(helper_env: HelperEnv, snapshot_id: str, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = {s["id"]: s for s in helper_env.run_json("list")}
        if snapshot_id in found and found[snapshot_id]["location"] == location:
            return found[snapshot_id]
        time.sleep(0.5)
    push_log = helper_env.storage / "push.log"
    raise AssertionError(f"{snapshot_id} never became {location}: {push_log.read_text() if push_log.exists() else ''}")


def test_a_verified_snapshot_goes_to_sftp_in_the_background_and_restores_from_there(
    helper_env: HelperEnv, sftp_remote: dict[str, Any]
) -> None:
    helper_env.write(
        remotes={"offsite": {"target": sftp_remote["target"], "rclone_config": sftp_remote["rclone_config"]}}
    )
    unverified = helper_env.run_json("snapshot", "--kind", "manual")
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")

    listed = wait_location(helper_env, snap["id"], "both")
    assert listed["remotes"] == ["offsite"]
    on_remote = sftp_remote["folder"] / snap["id"]
    assert (on_remote / "manifest.json").is_file() and (on_remote / "filestore.tar").is_file()
    assert not (sftp_remote["folder"] / unverified["id"]).exists()  # only verified snapshots leave the host

    # The local disk loses the snapshot; the deployment changes data.
    shutil.rmtree(helper_env.storage / "snapshots" / snap["id"])
    helper_env.db.execute("DELETE FROM account_move WHERE id <= 20")
    assert {s["id"]: s["location"] for s in helper_env.run_json("list")}[snap["id"]] == "remote"

    restored = helper_env.run_json("restore", snap["id"], "--yes")
    assert restored["ok"] is True
    assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 50}
    assert {s["id"]: s["location"] for s in helper_env.run_json("list")}[snap["id"]] == "both"


def test_a_damaged_remote_copy_is_refused_and_nothing_changes(
    helper_env: HelperEnv, sftp_remote: dict[str, Any]
) -> None:
    helper_env.write(
        remotes={"offsite": {"target": sftp_remote["target"], "rclone_config": sftp_remote["rclone_config"]}}
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    wait_location(helper_env, snap["id"], "both")
    shutil.rmtree(helper_env.storage / "snapshots" / snap["id"])
    with (sftp_remote["folder"] / snap["id"] / "filestore.tar").open("r+b") as handle:
        handle.write(b"damaged")
    helper_env.db.execute("DELETE FROM account_move WHERE id <= 20")

    result = helper_env.run("drill", snap["id"])
    assert result.returncode != 0 and "damaged" in result.stderr and result.stderr.count("\n") == 1
    assert not list((helper_env.storage / "snapshots").glob(f"*{snap['id']}"))
    assert database_counts(helper_env.db.name)["account_move"] == 180


def test_s3_copies_of_chosen_kinds_with_their_own_retention_and_a_drill_from_s3(
    helper_env: HelperEnv, s3_remote: dict[str, Any]
) -> None:
    helper_env.write(
        remotes={
            "s3": {
                "target": s3_remote["target"],
                "rclone_config": s3_remote["rclone_config"],
                "kinds": ["pre_deploy"],
                "keep_last": 1,
            }
        }
    )
    manual = helper_env.run_json("snapshot", "--kind", "manual", "--verify")
    first = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    wait_location(helper_env, first["id"], "both")
    second = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    wait_location(helper_env, second["id"], "both")
    # The remote keeps one pre_deploy copy; the local disk keeps both; manual ones stay local.
    wait_location(helper_env, first["id"], "local")
    assert {s["id"]: s["location"] for s in helper_env.run_json("list")}[manual["id"]] == "local"

    shutil.rmtree(helper_env.storage / "snapshots" / second["id"])
    drill = helper_env.run_json("drill", second["id"])
    assert drill["ok"] is True
    journal = helper_env.run_json("journal")["events"]
    assert any(e["step"] == "fetch" and e["status"] == "done" for e in journal)


def test_credentials_readable_by_others_are_refused(helper_env: HelperEnv, s3_remote: dict[str, Any]) -> None:
    helper_env.write(remotes={"s3": {"target": s3_remote["target"], "rclone_config": s3_remote["rclone_config"]}})
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    helper_env.run_json("verify", snap["id"])
    Path(s3_remote["rclone_config"]).chmod(0o644)
    result = helper_env.run("push", snap["id"])
    assert result.returncode == 2
    assert "readable by others" in result.stderr and result.stderr.count("\n") == 1
    listed = helper_env.run("list")
    assert listed.returncode == 2 and "readable by others" in listed.stderr
