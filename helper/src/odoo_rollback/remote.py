"""Off-host copies of snapshots, written and read with rclone (one well-kept transport for S3, SFTP,
Azure, GCS, B2 and more; see helper/README.md for why rclone).

Layout on a remote: ``<target>/<snapshot id>/`` holds the snapshot's files as they are on the local
disk. ``manifest.json`` is uploaded last, so a copy without it is incomplete and never offered. A copy
is verified right after the upload by ``rclone check`` (hashes on both sides; where the remote has no
hash in common with the local disk, by reading every file back).

Credentials are in the rclone configuration file named by ``[remotes.<name>] rclone_config``; the
helper refuses it (and any ``key_file`` it names) when group or others can read it.
"""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checksums import check_files
from .config import Config, RemoteConfig
from .errors import ConfigError, OperationFailed, SnapshotNotFound, SnapshotRefused
from .journal import DONE, FAILED, Journal
from .lock import operation_lock
from .manifest import MANIFEST_NAME, Manifest
from .process import run
from .retention import select_prunable
from .storage import SNAPSHOT_ID, RefusedFolder, Snapshot, SnapshotStore, fsync_dir, identity_problem, read_manifest

NO_COMMON_HASH = "no common hash"


def check_private(path: Path, what: str) -> None:
    """Refuse a credentials file that anyone but its owner may read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")


def check_credentials(remote: RemoteConfig) -> None:
    check_private(remote.rclone_config, f"remotes.{remote.name}.rclone_config")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(remote.rclone_config, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"remotes.{remote.name}.rclone_config is not an rclone configuration: {exc}") from exc
    for section in parser.sections():
        key_file = parser.get(section, "key_file", fallback=None)
        if key_file:
            check_private(Path(os.path.expanduser(key_file)), f"the key_file of rclone remote [{section}]")


@dataclass
class RemoteStore:
    remote: RemoteConfig

    def rclone(self, *args: str, what: str) -> subprocess.CompletedProcess[str]:
        check_credentials(self.remote)
        env = {**os.environ, "RCLONE_CONFIG": str(self.remote.rclone_config)}
        return run(["rclone", "--config", str(self.remote.rclone_config), *args], env=env, what=what)

    def path(self, *parts: str) -> str:
        return "/".join([self.remote.target, *parts])

    def ids(self) -> list[str]:
        """Complete snapshot copies on the remote, newest first."""
        listing = self.rclone(
            "lsf", "--recursive", "--files-only", "--include", f"/*/{MANIFEST_NAME}", self.path(), what="rclone lsf"
        ).stdout
        found = {line.split("/")[0] for line in listing.splitlines() if line.endswith(f"/{MANIFEST_NAME}")}
        return sorted((i for i in found if SNAPSHOT_ID.match(i)), reverse=True)

    def manifest(self, snapshot_id: str) -> Manifest:
        text = self.rclone("cat", self.path(snapshot_id, MANIFEST_NAME), what="rclone cat").stdout
        return Manifest.from_json(text)

    def opened(self, snapshot_id: str, database: str) -> Snapshot:
        """The remote copy of *snapshot_id*, refused (SnapshotRefused) when its folder holds another
        snapshot or another database's (the identity check of storage.open_snapshot)."""
        manifest = self.manifest(snapshot_id)
        problem = identity_problem(snapshot_id, manifest, database)
        if problem:
            raise SnapshotRefused(f"on remote {self.remote.name}: {problem}")
        return Snapshot(snapshot_id, Path(self.path(snapshot_id)), manifest)

    def scan(self, database: str) -> tuple[list[Snapshot], list[RefusedFolder]]:
        """The copies of *database*'s snapshots, newest first; and the folders refused, with why."""
        snapshots, refused = [], []
        for snapshot_id in self.ids():
            try:
                snapshots.append(self.opened(snapshot_id, database))
            except (SnapshotRefused, ValueError, TypeError) as exc:
                refused.append(RefusedFolder(snapshot_id, Path(self.path(snapshot_id)), str(exc)))
        return snapshots, refused

    def snapshots(self, database: str) -> list[Snapshot]:
        """Only *database*'s own copies: remote retention never removes what it cannot identify."""
        return self.scan(database)[0]

    def push(self, snapshot: Snapshot) -> None:
        """Upload *snapshot*, manifest last, and check the copy against the local files."""
        target = self.path(snapshot.id)
        self.rclone("copy", "--exclude", f"/{MANIFEST_NAME}", str(snapshot.path), target, what="rclone copy")
        self.check(snapshot.path, target, exclude_manifest=True)
        self.rclone("copyto", str(snapshot.path / MANIFEST_NAME), f"{target}/{MANIFEST_NAME}", what="rclone copyto")

    def check(self, local: Path, target: str, exclude_manifest: bool = False) -> None:
        args = ["check", "--one-way", *(["--exclude", f"/{MANIFEST_NAME}"] if exclude_manifest else [])]
        result = self.rclone(*args, str(local), target, what="rclone check")
        if NO_COMMON_HASH in result.stderr.lower():
            # Sizes alone prove nothing: read every file back and compare.
            self.rclone(*args, "--download", str(local), target, what="rclone check --download")

    def fetch(self, snapshot_id: str, partial: Path) -> None:
        self.rclone("copy", self.path(snapshot_id), str(partial), what="rclone copy")

    def delete(self, snapshot_id: str) -> None:
        self.rclone("purge", self.path(snapshot_id), what="rclone purge")


def push_snapshot(cfg: Config, snapshot_id: str, journal: Journal, only: str | None = None) -> list[dict[str, Any]]:
    """Copy a verified snapshot to every remote that wants its kind and lacks it; then remote retention."""
    for remote in cfg.remotes:
        check_credentials(remote)  # a configuration problem is the operator's: said once, before any upload
    snapshot = SnapshotStore(cfg.storage).get(snapshot_id)
    if not snapshot.manifest.verified_at:
        raise OperationFailed(f"snapshot {snapshot_id} is not verified; only verified snapshots are copied off-host")
    results = []
    for remote in cfg.remotes:
        if (only and remote.name != only) or not remote.wants(snapshot.manifest.kind):
            continue
        store = RemoteStore(remote)
        op = journal.begin("push", snapshot.manifest.database, {"snapshot": snapshot_id, "remote": remote.name})
        try:
            if snapshot_id not in store.ids():
                store.push(snapshot)
            removed = apply_remote_retention(cfg, remote, journal)
        except BaseException as exc:
            journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
            results.append({"remote": remote.name, "ok": False, "error": str(exc)})
            continue
        journal.finish(op, DONE, f"snapshot {snapshot_id} copied to {remote.name}", {"removed": removed})
        results.append({"remote": remote.name, "ok": True, "removed": removed})
    return results


def push_in_background(cfg: Config, snapshot: Snapshot) -> bool:
    """Start ``odoo-rollback push ID`` detached, so the caller does not wait for the upload."""
    if cfg.source is None or not any(r.wants(snapshot.manifest.kind) for r in cfg.remotes):
        return False
    log = (cfg.storage.path / "push.log").open("a", encoding="utf-8")
    with log:
        subprocess.Popen(
            [sys.executable, "-m", "odoo_rollback.cli", "--config", str(cfg.source), "push", snapshot.id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the command (and a job) that took the snapshot
            env={k: v for k, v in os.environ.items() if k != "ODOO_ROLLBACK_JOB_ID"},
        )
    return True


def apply_remote_retention(cfg: Config, remote: RemoteConfig, journal: Journal) -> list[str]:
    """The remote's own retention ([remotes.<name>] keep_last, max_days); the local rules apply otherwise."""
    if not remote.retention.active:
        return []
    store = RemoteStore(remote)
    doomed = select_prunable(store.snapshots(cfg.database.name), remote.retention)
    for snapshot in doomed:
        store.delete(snapshot.id)
    return [s.id for s in doomed]


def locations(
    cfg: Config,
) -> tuple[dict[str, list[str]], dict[str, Snapshot], list[str], list[RefusedFolder]]:
    """Which remotes hold which snapshot, the remote-only snapshots, the remotes that did not answer,
    and the remote folders refused (another snapshot's or another database's inside)."""
    where: dict[str, list[str]] = {}
    remote_only: dict[str, Snapshot] = {}
    unreachable = []
    refused: list[RefusedFolder] = []
    local = {s.id for s in SnapshotStore(cfg.storage).list()}
    for remote in cfg.remotes:
        store = RemoteStore(remote)
        try:
            snapshots, bad = store.scan(cfg.database.name)
        except OperationFailed as exc:
            unreachable.append(f"{remote.name}: {exc}")
            continue
        refused.extend(bad)
        for snapshot in snapshots:
            where.setdefault(snapshot.id, []).append(remote.name)
            if snapshot.id not in local and snapshot.id not in remote_only:
                remote_only[snapshot.id] = snapshot
    return where, remote_only, unreachable, refused


def ensure_local(cfg: Config, snapshot_id: str, journal: Journal) -> Snapshot:
    """The snapshot from the local disk, or fetched from the first remote that has it and verified."""
    store = SnapshotStore(cfg.storage)
    try:
        return store.get(snapshot_id)
    except SnapshotNotFound:
        if not cfg.remotes or not SNAPSHOT_ID.match(snapshot_id or ""):
            raise
    for remote in cfg.remotes:
        remote_store = RemoteStore(remote)
        if snapshot_id not in remote_store.ids():
            continue
        store.ensure_writable()
        # Under the operation lock: the partial folder is this run's, never a dead run's to clean.
        with operation_lock(cfg.storage.path, journal, "fetch", database=None):  # only the storage folder changes
            return _fetch(cfg, store, remote_store, snapshot_id, journal)
    raise SnapshotNotFound(f"no snapshot {snapshot_id} here nor on any remote (see 'odoo-rollback list')")


def _fetch(
    cfg: Config, store: SnapshotStore, remote_store: RemoteStore, snapshot_id: str, journal: Journal
) -> Snapshot:
    remote = remote_store.remote
    op = journal.begin("fetch", cfg.database.name, {"snapshot": snapshot_id, "remote": remote.name})
    partial = store.partial_path(snapshot_id)
    try:
        remote_store.fetch(snapshot_id, partial)
        fsync_dir(partial)
        manifest = read_manifest(partial, snapshot_id)
        # The same identity check as a local folder's: the remote folder's name is not trusted either.
        problem = identity_problem(snapshot_id, manifest, cfg.database.name)
        if problem:
            raise SnapshotRefused(f"the copy of {snapshot_id} on {remote.name}: {problem}")
        problems = check_files(partial, {n: e for n, e in manifest.files.items() if n != MANIFEST_NAME})
        if problems:
            raise OperationFailed(f"the copy of {snapshot_id} on {remote.name} is damaged: {'; '.join(problems)}")
        store.commit(snapshot_id)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
        raise
    journal.finish(op, DONE, f"snapshot {snapshot_id} fetched from {remote.name} and checked")
    return store.get(snapshot_id)
