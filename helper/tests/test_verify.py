"""verify: checksums, a readable dump, and --deep restores into a scratch database."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import HelperEnv, create_database, list_databases


def _dump_files(snapshot_path: Path) -> list[Path]:
    return sorted(p for p in (snapshot_path / "db.dump").iterdir() if p.name.endswith(".dat.gz"))


def test_verify_ok_and_deep_verify_drops_its_scratch_database(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")

    assert helper_env.run_json("verify", snap["id"]) == {"id": snap["id"], "ok": True, "problems": [], "deep": False}
    deep = helper_env.run_json("verify", snap["id"], "--deep")

    assert deep["ok"] is True and deep["deep"] is True
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert helper_env.run_json("list")[0]["verified_deep"] is True


def test_tampered_file_fails_verification(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot")
    target = _dump_files(Path(snap["path"]))[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))

    result = helper_env.run("verify", snap["id"], "--json")

    assert result.returncode == 1
    assert "checksum differs" in result.stdout
    assert helper_env.run_json("list")[0]["verified_at"] is None


def test_truncated_file_fails_verification(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot")
    archive = Path(snap["path"]) / "filestore.tar"
    archive.write_bytes(archive.read_bytes()[:100])

    result = helper_env.run("verify", snap["id"])

    assert result.returncode == 1
    assert "filestore.tar" in result.stdout and "truncated" in result.stdout


def test_deep_verify_detects_counts_that_differ_from_the_manifest(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot")
    manifest_path = Path(snap["path"]) / "manifest.json"
    manifest_path.write_text(manifest_path.read_text().replace('"res_partner": 50', '"res_partner": 49'))

    result = helper_env.run("verify", snap["id"], "--deep", "--json")

    assert result.returncode == 1
    assert "res_partner" in result.stdout
    assert list_databases(helper_env.db.name) == [helper_env.db.name]


def test_unknown_snapshot_id_is_a_clear_error(helper_env: HelperEnv) -> None:
    for bad in ("20990101T000000Z-manual-abcdef", "../../etc"):
        result = helper_env.run("verify", bad)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "snapshot" in result.stderr


def _run_on_terminal(helper_env: HelperEnv, *args: str) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """Run the CLI with stderr on a pseudo-terminal, as a person at a shell would; return what it showed."""
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), *args],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
            check=False,
        )
        os.close(terminal)
        shown = b""
        while select.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    return result, shown


def test_progress_is_shown_on_a_terminal(helper_env: HelperEnv) -> None:
    result, shown = _run_on_terminal(helper_env, "snapshot")
    assert result.returncode == 0 and b"dump:" in shown and b"B/s" in shown
    snapshot_id = helper_env.run_json("list")[0]["id"]

    result, shown = _run_on_terminal(helper_env, "verify", snapshot_id, "--deep")

    assert result.returncode == 0 and "ok (restored and counted)" in result.stdout
    # tqdm's bar: "restore <scratch database>: 100%|...| 3/3 [...table/s]"
    assert b"restore " in shown and b"3/3" in shown


def test_deep_verify_never_drops_a_database_it_did_not_make(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot")
    # Another run's scratch database under the name this run will pick (names have one-second resolution).
    names = [
        f"{helper_env.db.name}__verify_{time.strftime('%Y%m%d%H%M%S', time.gmtime(time.time() + d))}"
        for d in range(0, 4)
    ]
    for name in names:
        create_database(name)

    result = helper_env.run("verify", snap["id"], "--deep", "--json")

    survivors = list_databases(f"{helper_env.db.name}__verify_")
    assert set(names) <= set(survivors)
    if result.returncode != 0:
        assert "already exists" in result.stdout
