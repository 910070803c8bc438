"""A snapshot is read only through a verifying path, and only from the folder that is that snapshot.

Two rules, each enforced where snapshots are read and opened rather than command by command:

- every byte a command takes from a snapshot (to restore it, copy it, export it) is hashed as it is
  read, or read from a checked private copy: checking the folder and then reading it again lets a change
  made in between through (``copy`` and ``export`` did);
- a snapshot folder holds the snapshot named by its folder (its manifest's id), of the configured
  database, and is a folder of the storage itself, not a link: otherwise ``verify A`` said ok and
  ``restore A`` restored B's data under A's name.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from conftest import HelperEnv, database_counts, list_databases
from test_integrity import partner_names, snapshot_slow_to_restore, tampered_partners
from test_lock import start, wait_for_event

SOURCE = Path(__file__).resolve().parents[1] / "src" / "odoo_rollback"


# -- the rule in the source ------------------------------------------------------------------------
# The functions that may be handed a snapshot's dump or filestore archive: each hashes what it reads
# (extract_filestore, build_filestore, read_verified) or only checks without producing anything from the
# bytes (list_dump: pg_restore --list, as part of a check; filestore_copy_bytes: a space estimate from
# the archive's headers). restore_dump, tarfile.open, open, shutil... must never be.
VERIFYING_READERS = {"extract_filestore", "build_filestore", "read_verified", "list_dump", "filestore_copy_bytes"}
# What may be asked of the path itself: its metadata, not its bytes.
METADATA = {"stat", "is_file", "exists", "lstat"}
SNAPSHOT_FILES = {"dump_path", "filestore_archive"}


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else "?"


def _verifying_call(call: ast.Call) -> bool:
    """A verifying reader called, or handed to a thread pool (pool.submit(extract_filestore, path, ...))."""
    if _called_name(call) in VERIFYING_READERS:
        return True
    first = call.args[0] if call.args else None
    return _called_name(call) == "submit" and isinstance(first, ast.Name) and first.id in VERIFYING_READERS


def _bound_names(function: ast.AST) -> set[str]:
    """The names *function* binds to a snapshot's paths (archive, entry = snapshot.filestore_archive, ...)."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for target, value in zip(targets, values, strict=False):
                if isinstance(value, ast.Attribute) and value.attr in SNAPSHOT_FILES and isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def _unverified_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Every use of a snapshot's dump or archive path (or of a name a function bound it to) that is
    neither an argument of a verifying reader nor a question about its metadata or its name."""
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    uses: list[ast.expr] = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in SNAPSHOT_FILES]
    for function in functions:
        bound = _bound_names(function)
        uses += [
            n for n in ast.walk(function) if isinstance(n, ast.Name) and n.id in bound and isinstance(n.ctx, ast.Load)
        ]
    found = []
    for node in uses:
        parent = parents[node]
        if isinstance(parent, ast.Call) and node in parent.args and _verifying_call(parent):
            continue
        if isinstance(parent, ast.Attribute) and parent.attr in (*METADATA, "name"):
            continue  # its size, its existence, its name in a message
        if isinstance(parent, (ast.Assign, ast.Tuple, ast.FormattedValue)):
            continue  # the binding (its uses are checked through the name), or the path in a message
        found.append((node.lineno, ast.unparse(parent)))
    return sorted(found)


def test_snapshot_bytes_are_read_only_through_verifying_readers() -> None:
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "storage.py":  # where the two paths are defined
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(SOURCE)}:{line}: {text}" for line, text in _unverified_reads(tree)]
    assert not offenders, "a snapshot's bytes read without being hashed:\n" + "\n".join(offenders)


def test_the_source_rule_finds_a_direct_read() -> None:
    """The scan above can fail: the reads copy and export made before are found."""
    old = """
def copy(snapshot):
    restore_dump(cfg.database, snapshot.dump_path, name, 1, owner)
    with tarfile.open(snapshot.filestore_archive) as tar:
        pass
    archive = snapshot.filestore_archive
    shutil.copy(archive, "/elsewhere")
    extract_filestore(snapshot.filestore_archive, target, entry)
"""
    found = [text for _, text in _unverified_reads(ast.parse(old))]
    assert len(found) == 3, found
    assert "restore_dump" in found[0] and "tarfile.open" in found[1] and "shutil.copy" in found[2]


# -- copy and export read checked bytes ----------------------------------------------------------
def test_copy_restores_the_checked_bytes_of_a_dump_changed_after_its_check(helper_env: HelperEnv) -> None:
    snap = snapshot_slow_to_restore(helper_env)
    target = f"{helper_env.db.name}_copy"
    proc = start(helper_env, "copy", snap["id"], "--to", target)
    wait_for_event(helper_env.storage, "copy", "restore")  # the whole snapshot was checked
    packed, data = tampered_partners(Path(snap["path"]))
    packed.write_bytes(gzip.compress(data.encode()))
    packed.with_suffix("").write_text(data)

    _, err = proc.communicate(timeout=300)

    if proc.returncode == 0:  # the checked copy was made before the change
        assert partner_names(target) == ["Partner 1"]
    else:  # or the change was seen as it was copied: refused, nothing left
        assert "failed its checks" in err, err
        assert list_databases(target) == []
        assert not (helper_env.filestore.parent / target).exists()
    assert not list((helper_env.storage / "snapshots").glob(".partial-*"))


def tamper_attachment(archive: Path, content: bytes) -> None:
    """One attachment's bytes in the archive changed in place: same size, same names."""
    offset = archive.read_bytes().index(content)
    with archive.open("r+b") as handle:
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in content[:64]))


def test_export_refuses_a_filestore_archive_changed_after_its_check_and_leaves_no_zip(
    helper_env: HelperEnv, tmp_path: Path
) -> None:
    attachment = next(p for p in helper_env.filestore.rglob("*") if p.is_file())
    snap = snapshot_slow_to_restore(helper_env)
    target = tmp_path / "backup.zip"
    proc = start(helper_env, "export", snap["id"], str(target))
    partial = target.with_name(f".{target.name}.partial")
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0):  # checked; dump.sql is being written
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    tamper_attachment(Path(snap["path"]) / "filestore.tar", attachment.read_bytes())

    _, err = proc.communicate(timeout=300)

    assert proc.returncode == 4, err
    assert "filestore.tar differs from its checksum in the manifest" in err
    assert not target.exists() and not partial.exists()
    assert not list((helper_env.storage / "reading").iterdir())  # the checked copy of the dump is gone


def test_export_to_a_pipe_of_a_changed_archive_is_not_a_readable_zip(helper_env: HelperEnv) -> None:
    """Bytes already sent cannot be taken back: the zip is left without its closing record."""
    attachment = next(p for p in helper_env.filestore.rglob("*") if p.is_file())
    snap = snapshot_slow_to_restore(helper_env)
    helper_env.write()
    proc = subprocess.Popen(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), "export", snap["id"], "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # The first bytes of dump.sql: the export then waits on the full pipe, before the archive is read.
    head = proc.stdout.read(1024)
    tamper_attachment(Path(snap["path"]) / "filestore.tar", attachment.read_bytes())
    rest, err = proc.communicate(timeout=300)

    assert proc.returncode == 4, err
    assert b"filestore.tar differs from its checksum" in err
    assert not zipfile.is_zipfile(io.BytesIO(head + rest))


def test_export_of_an_intact_snapshot_is_a_complete_zip_with_its_own_bytes(
    helper_env: HelperEnv, tmp_path: Path
) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    target = tmp_path / "backup.zip"
    helper_env.run("export", snap["id"], str(target), check=True)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        stored = {n.removeprefix("filestore/"): zf.read(n) for n in names if n.startswith("filestore/")}
    assert names[0] == "dump.sql" and names[-1] == "manifest.json"
    live = {
        str(p.relative_to(helper_env.filestore)): p.read_bytes() for p in helper_env.filestore.rglob("*") if p.is_file()
    }
    assert stored == live
    assert not list((helper_env.storage / "reading").iterdir())


def test_export_leaves_a_live_export_s_copy_and_removes_a_dead_one(helper_env: HelperEnv, tmp_path: Path) -> None:
    """The checked copies of exports, which run without the operation lock, are told apart by flock."""
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    reading = helper_env.storage / "reading"
    reading.mkdir()
    (reading / "12345-dead").mkdir()  # a killed export's: nobody holds it
    (reading / "12345-dead" / "leftover").write_bytes(b"x" * 1000)
    live = reading / "67890-live"
    live.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(live),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        helper_env.run("export", snap["id"], str(tmp_path / "a.zip"), check=True)
    finally:
        holder.kill()
        holder.communicate()
    assert sorted(p.name for p in reading.iterdir()) == ["67890-live"]
    assert zipfile.is_zipfile(tmp_path / "a.zip")


def test_export_refuses_a_link_in_place_of_its_reading_folder(helper_env: HelperEnv, tmp_path: Path) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    (tmp_path / "elsewhere").mkdir()
    (helper_env.storage / "reading").symlink_to(tmp_path / "elsewhere")

    result = helper_env.run("export", snap["id"], str(tmp_path / "a.zip"))

    assert result.returncode == 3 and "reading is a link" in result.stderr, result.stderr
    assert not (tmp_path / "a.zip").exists() and not list((tmp_path / "elsewhere").iterdir())


# -- a snapshot folder is the snapshot it is named after -----------------------------------------
def two_snapshots(helper_env: HelperEnv) -> tuple[dict[str, str], dict[str, str]]:
    """A and B of the live database, then more changes (so a restore of either changes the counts)."""
    a = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'between ' || i FROM generate_series(1, 5) i")
    b = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    return a, b


def test_a_snapshot_folder_holding_another_snapshot_is_refused_everywhere(helper_env: HelperEnv) -> None:
    a, b = two_snapshots(helper_env)
    before = database_counts(helper_env.db.name)
    pa = Path(a["path"])
    shutil.rmtree(pa)
    shutil.copytree(Path(b["path"]), pa)  # A's folder holds B's self-consistent files and manifest

    for args in (["verify", a["id"]], ["restore", a["id"], "--yes"], ["copy", a["id"], "--to", "x_copy"]):
        result = helper_env.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"holds snapshot '{b['id']}'" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert database_counts(helper_env.db.name) == before
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    listed = helper_env.run_json("list")
    assert [s["id"] for s in listed if "refused" not in s] == [b["id"]]
    assert [(s["id"], "holds snapshot" in s["refused"]) for s in listed if "refused" in s] == [(a["id"], True)]
    human = helper_env.run("list", check=True).stdout
    assert f"REFUSED {a['id']} (local)" in human
    # The refused folder is never pruned nor verified as A: it is left for the operator to look into.
    helper_env.run("prune", "--keep", "1", check=True)
    assert pa.is_dir()


def test_a_snapshot_folder_replaced_by_a_link_is_refused(helper_env: HelperEnv, tmp_path: Path) -> None:
    a = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    before = database_counts(helper_env.db.name)
    pa = Path(a["path"])
    outside = tmp_path / "outside-the-storage"
    shutil.copytree(pa, outside)  # self-consistent: the altered file with its manifest entry updated
    packed, data = tampered_partners(outside)
    packed.write_bytes(gzip.compress(data.encode()))
    manifest = json.loads((outside / "manifest.json").read_text())
    manifest["files"][f"db.dump/{packed.name}"] = {
        "size": packed.stat().st_size,
        "sha256": hashlib.sha256(packed.read_bytes()).hexdigest(),
    }
    (outside / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(pa)
    pa.symlink_to(outside)

    verified = helper_env.run("verify", a["id"])
    result = helper_env.run("restore", a["id"], "--yes")

    assert verified.returncode == 2 and "is a link" in verified.stderr, verified.stdout
    assert result.returncode == 2 and "is a link" in result.stderr
    assert database_counts(helper_env.db.name) == before
    assert partner_names(helper_env.db.name) == ["Partner 1"]
    assert next(s["refused"] for s in helper_env.run_json("list") if s["id"] == a["id"]).endswith(
        "refused, nothing read from it"
    )


def test_a_folder_of_another_database_is_listed_as_refused_and_not_restored(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    manifest = Path(snap["path"]) / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"database": "{helper_env.db.name}"', '"database": "other"'))

    listed = helper_env.run("list")
    exported = helper_env.run("export", snap["id"], str(helper_env.storage / "x.zip"))
    restored = helper_env.run("restore", snap["id"], "--yes")

    assert (
        listed.returncode == 0
        and f"REFUSED {snap['id']} (local): snapshot {snap['id']} is of database 'other'" in listed.stdout
    )
    for result in (exported, restored):
        assert result.returncode == 2 and "not of the configured database" in result.stderr, result.stderr
    assert not (helper_env.storage / "x.zip").exists()
    assert database_counts(helper_env.db.name)["res_partner"] == 57


def test_a_remote_folder_holding_another_snapshot_is_refused(helper_env: HelperEnv, tmp_path: Path) -> None:
    remote_dir = tmp_path / "offsite"
    remote_dir.mkdir()
    conf = tmp_path / "rclone.conf"
    conf.write_text("[loc]\ntype = local\n")
    conf.chmod(0o600)
    helper_env.write(remotes={"offsite": {"target": f"loc:{remote_dir}", "rclone_config": str(conf)}})
    a, b = two_snapshots(helper_env)
    helper_env.run("push", a["id"], check=True)
    helper_env.run("push", b["id"], check=True)
    before = database_counts(helper_env.db.name)
    shutil.rmtree(remote_dir / a["id"])
    shutil.copytree(remote_dir / b["id"], remote_dir / a["id"])
    shutil.rmtree(Path(a["path"]))

    listed = helper_env.run_json("list")
    result = helper_env.run("restore", a["id"], "--yes")

    assert [(s["id"], s["location"]) for s in listed if "refused" in s] == [(a["id"], "remote")]
    assert result.returncode == 2 and f"holds snapshot '{b['id']}'" in result.stderr, result.stderr
    assert database_counts(helper_env.db.name) == before
    assert not (helper_env.storage / "snapshots" / a["id"]).exists()
    assert not list((helper_env.storage / "snapshots").glob(".partial-*"))
