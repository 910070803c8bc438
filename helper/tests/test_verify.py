"""verify: checksums, a readable dump, and --deep restores into a scratch database."""

from __future__ import annotations

from pathlib import Path

from conftest import HelperEnv, list_databases


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
